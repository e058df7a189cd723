"""W&B sweep files: expansion with W&B's semantics and a local runner for offline use."""
