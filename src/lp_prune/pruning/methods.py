"""One entry point for all pruning methods: weights + input statistics -> pruned weights and masks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from lp_prune.pruning.magnitude import magnitude_mask
from lp_prune.pruning.sparsegpt import sparsegpt_prune_stacked
from lp_prune.pruning.statistics import InputStatistics
from lp_prune.pruning.wanda import wanda_mask

METHOD_NEEDS_GRAM = {"sparsegpt": True, "wanda": False, "magnitude": False}


@dataclass
class PrunedWeight:
    weight: torch.Tensor  # the new weight (same dtype/device as the input)
    mask: torch.Tensor  # True where pruned
    solver_loss: float | None = None  # SparseGPT's own error estimate
    percdamp: float | None = None  # SparseGPT damping actually used


def prune_weights(
    method: str,
    weights: Sequence[torch.Tensor],
    sparsity: float,
    *,
    sq_norms: torch.Tensor | None = None,
    hessian: torch.Tensor | None = None,
    n_m: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    column_loop: Callable[[], AbstractContextManager] = nullcontext,
    factorisation: Callable[[], AbstractContextManager] = nullcontext,
) -> list[PrunedWeight]:
    """Apply `method` to weights that read one input: Wanda needs its squared norms ||X_j||^2,
    SparseGPT its float32 Hessian (overwritten: one stacked solve for all the weights)."""
    if method == "magnitude":
        return [_zeroed(weight, magnitude_mask(weight, sparsity, n_m)) for weight in weights]
    if method == "wanda":
        if sq_norms is None:
            raise ValueError("wanda needs the squared input norms")
        return [_zeroed(weight, wanda_mask(weight, sq_norms, sparsity, n_m)) for weight in weights]
    if method == "sparsegpt":
        if hessian is None:
            raise ValueError("sparsegpt needs the Hessian")
        results = sparsegpt_prune_stacked(
            weights, hessian, sparsity, n_m, blocksize, percdamp, column_loop, True, factorisation
        )
        return [PrunedWeight(r.weight, r.mask, r.loss, r.percdamp) for r in results]
    raise ValueError(f"unknown pruning method '{method}'")


def prune_weight(
    method: str,
    weight: torch.Tensor,
    stats: InputStatistics | None,
    sparsity: float,
    n_m: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> PrunedWeight:
    """One weight with its statistics (None for magnitude): `prune_weights` for a single Linear."""
    if stats is None and method != "magnitude":
        raise ValueError(f"{method} needs calibration statistics")
    return prune_weights(
        method,
        [weight],
        sparsity,
        sq_norms=stats.sq_norms if stats is not None else None,
        hessian=stats.hessian() if stats is not None and method == "sparsegpt" else None,
        n_m=n_m,
        blocksize=blocksize,
        percdamp=percdamp,
    )[0]


def _zeroed(weight: torch.Tensor, mask: torch.Tensor) -> PrunedWeight:
    return PrunedWeight(weight.masked_fill(mask, 0), mask)
