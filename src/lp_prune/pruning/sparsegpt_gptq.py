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

from lp_prune.errors import ConfigError
from lp_prune.pruning.grid import QuantGrid
from lp_prune.pruning.hessian import sparsegpt_hessian
from lp_prune.pruning.method import (
    GroupInputs,
    LocalError,
    PrunedWeight,
    PruneSettings,
    Runtime,
    Statistics,
    register,
)
from lp_prune.pruning.obs import Pruning, Quantizer, solve
from lp_prune.pruning.quantize import check_grid, group_columns


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


class SparseGPTGPTQ:
    """Pruning and quantization in one second-order column loop: the Hessian H = 2/n X^T X from the Gram."""

    name = "sparsegpt_gptq"
    statistics: Statistics = "gram"
    default_local_error: LocalError = "exact"  # the Gram is there anyway
    updates_kept_weights = True
    quantizes = True

    def solver_bytes(self, width: int, rows: int) -> int:
        return 12 * width * width + rows * width * 9  # Gram copies and factors; rows, errors, keep flags

    def check(self, settings: PruneSettings) -> None:
        check_grid(self.name, settings)
        if settings.n_m is not None and settings.blocksize % settings.n_m[1]:
            raise ConfigError(
                f"prune.blocksize {settings.blocksize} must be a multiple of M={settings.n_m[1]} for N:M {self.name}"
            )

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        settings: PruneSettings,
        runtime: Runtime,
    ) -> list[PrunedWeight]:
        if inputs.gram is None:
            raise ValueError(f"{self.name} needs the Gram X^T X")
        hessian = sparsegpt_hessian(inputs.gram, inputs.samples)  # a new tensor: the solve may overwrite it
        results = prune_and_quantize_stacked(
            weights,
            hessian,
            sparsity,
            settings.bits,
            group_columns(settings),
            settings.symmetric,
            settings.n_m,
            settings.blocksize,
            settings.percdamp,
            runtime.column_loop,
            True,
            runtime.factorisation,
        )
        return [PrunedWeight(r.weight, r.mask, r.loss, r.percdamp, r.grid) for r in results]


register(SparseGPTGPTQ())
