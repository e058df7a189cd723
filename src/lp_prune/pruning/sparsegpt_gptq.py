"""SparseGPT's joint sparsification and quantization (Frantar & Alistarh, 2023, section 3.5): prune and
quantize a Linear in one column loop, e.g. 50% + 4-bit.

The Hessian, damping and the upper Cholesky factor U of H^-1 are SparseGPT's (`hessian.py`), and so
is the column loop (`obs.py`), here with both a mask chooser and a quantizer: masks are chosen as
SparseGPT chooses them (unstructured per block of columns from w^2 / U_ii^2, or N:M per group of M
columns on the updated weights). At column i the kept weights are rounded onto the grid and the pruned
ones set to 0, q = quant(w_i * keep_i), and the scaled error err = (w_i - q) / U_ii reaches the later
columns through row i of U, as in GPTQ: one error feedback covers both the pruning and the rounding.

Grid: one (scale, zero) per output row from the whole (dense) row, computed once before the loop, as
SparseGPT's reference does; or with `group_size` g one per row and group of g columns, computed when
the group's first column comes from its updated weights with the pruned entries known by then set
to 0 (all of them when g divides the block size for unstructured masks, or is a multiple of M for N:M).
0 is always on the grid (its range holds 0), so pruned weights stay exactly 0.

Reported loss: sum (w - q)^2 / U_ii^2 / 2 over all weights. Everything is computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from lp_prune.pruning.grid import QuantGrid
from lp_prune.pruning.hessian import sparsegpt_hessian
from lp_prune.pruning.method import GroupInputs, PruneContext, PrunedWeight, Runtime
from lp_prune.pruning.obs import Pruning, Quantizer, SolverSettings, solve
from lp_prune.pruning.quantize import GridSettings
from lp_prune.pruning.registry import register


@dataclass
class JointResult:
    weight: torch.Tensor  # pruned and dequantized weight, original dtype and device
    mask: torch.Tensor  # True where pruned
    loss: float  # sum (w - q)^2 / U_ii^2 / 2
    percdamp: float  # the damping finally used
    grid: QuantGrid  # the grid `weight` lies on (pruned entries: code = zero)


def prune_and_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    bits: int,
    group_size: int | None = None,
    symmetric: bool = False,
    n_m: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> JointResult:
    """Prune `weight` [d_out, d_in] to `sparsity` (or N:M) and quantize its kept weights to `bits`."""
    return prune_and_quantize_stacked(
        [weight], hessian, sparsity, bits, group_size, symmetric, n_m, blocksize, percdamp
    )[0]


def prune_and_quantize_stacked(
    weights: Sequence[torch.Tensor],
    hessian: torch.Tensor,
    sparsity: float,
    bits: int,
    group_size: int | None = None,
    symmetric: bool = False,
    n_m: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    column_loop: Callable[[], AbstractContextManager] = nullcontext,
    in_place: bool = False,
    factorisation: Callable[[], AbstractContextManager] = nullcontext,
) -> list[JointResult]:
    """Several weights reading the same input in one solve (rows stacked; masks chosen per weight)."""
    pruning, quantizer = Pruning(sparsity, n_m), Quantizer(bits, symmetric, group_size)
    solved = solve(
        weights, hessian, blocksize, percdamp, pruning, quantizer, False, column_loop, in_place, factorisation
    )
    return [JointResult(p.weight, p.mask, p.loss, solved.percdamp, p.grid) for p in solved.pieces(weights)]


@register
@dataclass(frozen=True)
class SparseGPTGPTQ(GridSettings, SolverSettings):
    """Pruning and quantization in one second-order column loop: the Hessian H = 2/n X^T X from the Gram."""

    name = "sparsegpt_gptq"
    display_name = "SparseGPT + GPTQ (joint)"
    statistics = "gram"
    default_local_error = "exact"  # the Gram is there anyway
    updates_kept_weights = True
    quantizes = True
    export_format = "pack-quantized"

    def solver_bytes(self, width: int, rows: int) -> int:
        return 12 * width * width + rows * width * 9  # Gram copies and factors; rows, errors, keep flags

    def check(self, context: PruneContext) -> None:
        self.check_grid(context)
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
            raise ValueError(f"{self.name} needs the Gram X^T X")
        hessian = sparsegpt_hessian(inputs.gram, inputs.samples)  # a new tensor: the solve may overwrite it
        results = prune_and_quantize_stacked(
            weights,
            hessian,
            sparsity,
            self.bits,
            self.columns_per_grid,
            self.symmetric,
            context.n_m,
            self.blocksize,
            self.percdamp,
            runtime.column_loop,
            True,
            runtime.factorisation,
        )
        return [PrunedWeight(r.weight, r.mask, r.loss, r.percdamp, r.grid) for r in results]
