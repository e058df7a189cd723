"""GPTQ (Frantar et al., 2022): quantize a Linear column by column with second-order error feedback.

The Hessian, dead-input handling, damping and the upper Cholesky factor U of H^-1 are SparseGPT's
(`hessian.py`), and so is the column loop (`obs.py`), here with a quantizer and no mask chooser:
column i is rounded onto the grid, q = quant(w_i), and its scaled error err = (w_i - q) / U_ii reaches
the not-yet-quantized columns through row i of U (the optimal-brain-quantizer update). The result
equals the textbook update that inverts the Hessian of the remaining columns at every step
(tests/test_gptq.py checks it).

Grid (`quantize.py`): one (scale, zero) per output row from the whole row, or with `group_size` g
one per row and group of g consecutive columns, computed from the group's already-updated weights
(every earlier column's error applied, also across a block boundary) when its first column comes.
IST-DASLab/gptq computes a group's grid from weights that lack the updates of the earlier columns of
the current block, so its groups depend on `blocksize`; here they do not.

act_order: columns are visited in descending diag(H) (the inputs with the most energy first), then
the permutation is undone. Groups follow the visiting order (IST-DASLab's `static_groups` off): a
group is g consecutive visited columns, so after undoing the permutation the columns sharing a grid
are scattered over the row.

Reported loss: sum (w - q)^2 / U_ii^2 / 2, as SparseGPT's. Everything is computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from lp_prune.pruning.grid import QuantGrid
from lp_prune.pruning.hessian import sparsegpt_hessian
from lp_prune.pruning.method import GroupInputs, PruneContext, PrunedWeight, Runtime
from lp_prune.pruning.obs import Quantizer, SolverSettings, solve
from lp_prune.pruning.quantize import GridSettings
from lp_prune.pruning.registry import register


@dataclass
class GPTQResult:
    weight: torch.Tensor  # dequantized weight, original dtype and device
    loss: float  # sum (w - q)^2 / U_ii^2 / 2: GPTQ's own error estimate
    percdamp: float  # the damping finally used
    grid: QuantGrid  # the grid `weight` lies on


def gptq_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    bits: int,
    group_size: int | None = None,
    symmetric: bool = False,
    act_order: bool = False,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> GPTQResult:
    """Quantize one weight [d_out, d_in] with the Hessian H [d_in, d_in] (H itself is not modified)."""
    return gptq_quantize_stacked([weight], hessian, bits, group_size, symmetric, act_order, blocksize, percdamp)[0]


def gptq_quantize_stacked(
    weights: Sequence[torch.Tensor],
    hessian: torch.Tensor,
    bits: int,
    group_size: int | None = None,
    symmetric: bool = False,
    act_order: bool = False,
    blocksize: int = 128,
    percdamp: float = 0.01,
    column_loop: Callable[[], AbstractContextManager] = nullcontext,
    in_place: bool = False,
    factorisation: Callable[[], AbstractContextManager] = nullcontext,
) -> list[GPTQResult]:
    """Quantize several weights that read the same input in one solve (their rows stacked: every
    grid and update is per row, so each result is that of its own solve up to float32 rounding).
    `in_place=True` lets the solve overwrite `hessian` (a float32 tensor the caller no longer needs)."""
    quantizer = Quantizer(bits, symmetric, group_size)
    solved = solve(
        weights, hessian, blocksize, percdamp, None, quantizer, act_order, column_loop, in_place, factorisation
    )
    return [GPTQResult(p.weight, p.loss, solved.percdamp, p.grid) for p in solved.pieces(weights)]


@register
@dataclass(frozen=True)
class GPTQ(GridSettings, SolverSettings):
    """Quantization with second-order error feedback: the Hessian H = 2/n X^T X from the Gram."""

    name = "gptq"
    display_name = "GPTQ"
    statistics = "gram"
    default_local_error = "exact"  # the Gram is there anyway
    updates_kept_weights = True
    zeroes = False  # quantizes: zeroes nothing, ignores prune.sparsity
    quantizes = True
    export_format = "pack-quantized"

    act_order: bool = False
    """Quantize columns in descending diag(H), then restore their order (groups follow the visiting order,
    so the columns sharing a grid are scattered)."""

    def solver_bytes(self, width: int, rows: int) -> int:
        # Gram copies and factors (one more with act_order's permuted copy); the stacked float32 rows
        # and their errors.
        return 16 * width * width + rows * width * 8

    def check(self, context: PruneContext) -> None:
        self.check_quantization_only(context)

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        context: PruneContext,
        runtime: Runtime,
    ) -> list[PrunedWeight]:
        if inputs.gram is None:
            raise ValueError("gptq needs the Gram X^T X")
        hessian = sparsegpt_hessian(inputs.gram, inputs.samples)  # a new tensor: the solve may overwrite it
        results = gptq_quantize_stacked(
            weights,
            hessian,
            self.bits,
            self.columns_per_grid,
            self.symmetric,
            self.act_order,
            self.blocksize,
            self.percdamp,
            runtime.column_loop,
            True,
            runtime.factorisation,
        )
        return [
            PrunedWeight(r.weight, torch.zeros_like(r.weight, dtype=torch.bool), r.loss, r.percdamp, r.grid)
            for r in results
        ]
