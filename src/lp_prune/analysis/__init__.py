"""Cross-run analysis: reads saved runs (run directories), never live models.

Two features, one subpackage each, over shared modules:

- compare/: `lp-prune compare`, tables, mask IoU, figures, report and the study's findings across runs.
- analyze/: `lp-prune analyze`, the runs' pruned models beside the dense one (SNR, LSAR, LAPE).
- runs.py: `Run` and reading run directories, sweep folders and analysis.json.
- result.py: `AnalysisResult`, the typed analysis.json that analyze writes and compare reads.
- render.py: number formatting, Markdown / HTML tables, figure slugs and saving for both reports.
- iou.py: IoU of pruning masks on the bit-packed masks, and its chance level.
- disagreement.py: where the masks of several calibration languages disagree, per row and column.
- options.py: the options of `lp-prune analyze`.
"""
