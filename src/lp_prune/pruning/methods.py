"""One entry point for all pruning methods: weight + input statistics -> pruned weight and mask."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from lp_prune.pruning.magnitude import magnitude_mask
from lp_prune.pruning.sparsegpt import sparsegpt_prune
from lp_prune.pruning.statistics import InputStatistics
from lp_prune.pruning.wanda import wanda_mask

METHOD_NEEDS_GRAM = {"sparsegpt": True, "wanda": False, "magnitude": False}


@dataclass
class PrunedWeight:
    weight: torch.Tensor  # the new weight (same dtype/device as the input)
    mask: torch.Tensor  # True where pruned
    solver_loss: float | None = None  # SparseGPT's own error estimate
    percdamp: float | None = None  # SparseGPT damping actually used


def prune_weight(
    method: str,
    weight: torch.Tensor,
    stats: InputStatistics | None,
    sparsity: float,
    n_m: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    column_loop: Callable[[], AbstractContextManager] = nullcontext,
) -> PrunedWeight:
    """Apply `method` ('sparsegpt', 'wanda' or 'magnitude') to one weight matrix.

    `column_loop`: SparseGPT's per-block column loop runs inside it (see sparsegpt_prune)."""
    if method == "magnitude":
        mask = magnitude_mask(weight, sparsity, n_m)
        return PrunedWeight(weight.masked_fill(mask, 0), mask)
    if stats is None:
        raise ValueError(f"{method} needs calibration statistics")
    if method == "wanda":
        mask = wanda_mask(weight, stats.sq_norms, sparsity, n_m)
        return PrunedWeight(weight.masked_fill(mask, 0), mask)
    if method == "sparsegpt":
        result = sparsegpt_prune(weight, stats.hessian(), sparsity, n_m, blocksize, percdamp, column_loop)
        return PrunedWeight(result.weight, result.mask, result.loss, result.percdamp)
    raise ValueError(f"unknown pruning method '{method}'")
