"""Cross-run analysis: reads saved runs (run directories), never live models."""
