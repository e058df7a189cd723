"""`lp-prune analyze`: saved runs' pruned models beside their dense model, and the report.

- pipeline.py: `analyze()`: the dense pass, every run's pass, mask structure and the claims' numbers.
- side_by_side.py: held-out windows; the dense pass and a run's pass, layer by layer.
- layer_stream.py: streams hidden states and FFN gate activity of several models on the same tokens.
- snr.py: cumulative SNR per decoder layer, streamed.
- lsar.py: LSAR language-specific subspace and the split of the pruning error.
- lape.py: LAPE activation probabilities and language-specific neurons.
- lape_shifts.py: how pruning moved the LAPE neurons, and their overlap with the pruned weights.
- mask_structure.py: mask disagreement per projection and layer, and at the LAPE neurons.
- plots.py: the analysis figures.
- report.py: Markdown and HTML report, tables, W&B tables of an analysis.
"""
