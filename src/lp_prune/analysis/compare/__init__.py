"""`lp-prune compare`: cross-run tables, mask IoU, figures, report and the study's findings.

- tables.py: `Comparison` and `compare()`: perplexity, accuracy, per-item, IoU and per-layer tables.
- groups.py: how runs group: by setting, recipe order, one run per recipe, seed pairs.
- mask_iou.py: mask IoU between calibration languages, its floor and chance; pooled IoU of two runs.
- findings.py: the verdicts on claims C1-C8 and open question Q1, assembled from claims_perplexity.py
  (C1, C7), claims_downstream.py (C3), claims_masks.py (C4), claims_analysis.py (C2, C5, C6 from
  analysis.json), claims_lape.py (C8, structured runs, from analysis.json) and claims_task_type.py (Q1).
- verdicts.py: `Finding`, the four verdicts, the repeat floor and contrasts against it.
- targets.py: which rows are calibration languages (any text source) and their repeats.
- differences.py: downstream differences between calibrations, with item and draw noise.
- recipes.py: calibration recipes judged per target language, their verdicts and table.
- plots.py: the comparison's figures.
- report.py: Markdown, HTML and JSON reports of a comparison.
"""
