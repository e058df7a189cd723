"""Durable run records (run directory, masks, weights) and reading offline W&B runs back.

Nothing here imports wandb at module import time: ``wandb_offline`` imports it inside its functions.
"""

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
    pack_mask,
    packed_masks,
    read_json,
    save_masks,
    save_model_streaming,
    to_jsonable,
    unpack_mask,
    weight_files,
    write_json,
)
from lp_prune.tracking.wandb_offline import (
    find_offline_runs,
    iter_records,
    read_config,
    read_history,
    read_summary,
    run_file,
)

__all__ = [
    "RunDirectory",
    "as_run_directory",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "find_offline_runs",
    "iter_masks",
    "iter_records",
    "load_masks",
    "load_weights",
    "mask_names",
    "pack_mask",
    "packed_masks",
    "read_config",
    "read_history",
    "read_json",
    "read_summary",
    "run_file",
    "save_masks",
    "save_model_streaming",
    "to_jsonable",
    "unpack_mask",
    "weight_files",
    "write_json",
]
