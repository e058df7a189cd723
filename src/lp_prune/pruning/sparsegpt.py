"""SparseGPT (Frantar & Alistarh, 2023): prune and reconstruct a Linear with second-order updates.

For W (d_out x d_in) and the layer Hessian H = 2/n sum X^T X, each pruned weight's error is spread over
the not-yet-visited columns of its row through the upper Cholesky factor U of H^-1 (the
optimal-brain-surgeon update restricted to later columns). The column loop, shared with GPTQ and the
joint method, is `obs.py`'s: here it runs with a mask chooser and no quantizer. The Hessian helpers
live in `hessian.py` and are imported here under their old home too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from lp_prune.pruning.hessian import all_finite as all_finite
from lp_prune.pruning.hessian import flip_in_place as flip_in_place
from lp_prune.pruning.hessian import inverse_hessian_factor as inverse_hessian_factor
from lp_prune.pruning.hessian import sparsegpt_hessian
from lp_prune.pruning.method import (
    GroupInputs,
    PruneContext,
    PrunedWeight,
    Runtime,
)
from lp_prune.pruning.obs import Pruning, SolverSettings, solve
from lp_prune.pruning.registry import register


@dataclass
class SparseGPTResult:
    weight: torch.Tensor  # pruned and updated weight, original dtype and device
    mask: torch.Tensor  # True where pruned
    loss: float  # sum (w - q)^2 / Hinv_ii^2 / 2 over pruned weights: SparseGPT's own error estimate
    percdamp: float  # the damping finally used (raised when H was not positive definite)


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    n_m: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    column_loop: Callable[[], AbstractContextManager] = nullcontext,
    in_place: bool = False,
    factorisation: Callable[[], AbstractContextManager] = nullcontext,
) -> SparseGPTResult:
    """Prune `weight` to `sparsity` (unstructured, per block of columns) or to an N:M pattern.

    `column_loop` wraps each block's column-by-column loop and `factorisation` the Cholesky
    factorisation and triangular solve (the caller's machine tuning, e.g. `lp_prune.runtime`'s
    `single_thread` and `factor_threads`); the maths does not depend on them. `in_place=True` lets the
    solve overwrite `hessian` (a float32 tensor the caller no longer needs) instead of copying it.
    """
    return sparsegpt_prune_stacked(
        [weight], hessian, sparsity, n_m, blocksize, percdamp, column_loop, in_place, factorisation
    )[0]


def sparsegpt_prune_stacked(
    weights: Sequence[torch.Tensor],
    hessian: torch.Tensor,
    sparsity: float,
    n_m: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    column_loop: Callable[[], AbstractContextManager] = nullcontext,
    in_place: bool = False,
    factorisation: Callable[[], AbstractContextManager] = nullcontext,
) -> list[SparseGPTResult]:
    """Prune several weights that read the same input (q/k/v, gate/up: one Hessian) in one solve.

    Their rows are stacked: H is factorised once and the column loop runs once. The OBS update is
    row-independent, so every row gets exactly the update of a separate solve; the mask is still
    chosen per weight (per block of columns for unstructured, per row for N:M), so each result
    equals its own solve up to float32 rounding of the stacked matmuls.
    """
    solved = solve(
        weights, hessian, blocksize, percdamp, Pruning(sparsity, n_m), None, False, column_loop, in_place, factorisation
    )
    return [SparseGPTResult(p.weight, p.mask, p.loss, solved.percdamp) for p in solved.pieces(weights)]


@register
@dataclass(frozen=True)
class SparseGPT(SolverSettings):
    """Second order: the Hessian H = 2/n X^T X from the Gram, and updates of the kept weights."""

    name = "sparsegpt"
    display_name = "SparseGPT"
    statistics = "gram"
    default_local_error = "exact"  # the Gram is there anyway
    updates_kept_weights = True
    export_format = "sparse-bitmask"

    def solver_bytes(self, width: int, rows: int) -> int:
        return 12 * width * width + rows * width * 4  # Gram copies and factors; the stacked float32 rows

    def check(self, context: PruneContext) -> None:
        self.check_blocks(context)

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        context: PruneContext,
        runtime: Runtime,
    ) -> list[PrunedWeight]:
        if inputs.gram is None:
            raise ValueError("sparsegpt needs the Gram X^T X")
        hessian = sparsegpt_hessian(inputs.gram, inputs.samples)  # a new tensor: the solve may overwrite it
        results = sparsegpt_prune_stacked(
            weights,
            hessian,
            sparsity,
            context.n_m,
            self.blocksize,
            self.percdamp,
            runtime.column_loop,
            True,
            runtime.factorisation,
        )
        return [PrunedWeight(r.weight, r.mask, r.loss, r.percdamp) for r in results]
