"""Durable run records: the run directory, its masks and weights, and W&B through Lightning's logger.

- run_dir: a run folder's layout and the one rule for what counts as lp_prune's (marker, claim, status)
- saved_masks: masks.safetensors, bit-packed masks written once and read one module at a time
- saved_model: the pruned model in model/ (transformers' layout, sharded when large) and back
- fingerprint: what a run started with, so --resume never mixes two configurations
- summary: summary.json's record and its headline numbers for W&B
- sparse_checkpoint, quantized_checkpoint: model-compressed/ in compressed-tensors' formats, and back
- sparsity_config: the sparsity recorded beside a saved model's config.json (compressed-tensors' format)
- wandb_logger: W&B through Lightning's WandbLogger; run_labels: a run's W&B name, group and tags from
  its recipe; wandb_analysis: the W&B runs of compare, analyze and eval; wandb_runs: runs read back from W&B

Nothing here imports wandb at module import time. Tracking stands on storage, pruning and config only,
so models, data, evaluation and calibration may write into a run folder through it; what writes a whole
run (run_writer, model_card) stands above them, beside the pipeline.
"""

from lp_prune.pruning.masks import pack_mask, unpack_mask
from lp_prune.tracking.run_dir import RunDirectory, as_run_directory
from lp_prune.tracking.saved_masks import iter_masks, load_masks, mask_names, packed_masks, save_masks
from lp_prune.tracking.saved_model import load_weights, save_model_streaming, weight_files

__all__ = [
    "RunDirectory",
    "as_run_directory",
    "iter_masks",
    "load_masks",
    "load_weights",
    "mask_names",
    "pack_mask",
    "packed_masks",
    "save_masks",
    "save_model_streaming",
    "unpack_mask",
    "weight_files",
]
