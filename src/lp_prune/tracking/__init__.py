"""Durable run records: the run directory, its masks and weights, and W&B through Lightning's logger.

Nothing here imports wandb at module import time.
"""

from lp_prune.pruning.masks import pack_mask, unpack_mask
from lp_prune.tracking.run_dir import (
    RunDirectory,
    as_run_directory,
    atomic_output,
    atomic_write_bytes,
    atomic_write_text,
    iter_masks,
    load_masks,
    load_weights,
    mask_names,
    packed_masks,
    read_json,
    save_masks,
    save_model_streaming,
    to_jsonable,
    weight_files,
    write_json,
)

__all__ = [
    "RunDirectory",
    "as_run_directory",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "iter_masks",
    "load_masks",
    "load_weights",
    "mask_names",
    "pack_mask",
    "packed_masks",
    "read_json",
    "save_masks",
    "save_model_streaming",
    "to_jsonable",
    "unpack_mask",
    "weight_files",
    "write_json",
]
