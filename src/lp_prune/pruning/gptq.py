"""GPTQ (Frantar et al., 2022): quantize a Linear column by column with second-order error feedback.

The Hessian, dead-input handling, damping and the upper Cholesky factor U of H^-1 are SparseGPT's
(`sparsegpt.py`). Columns are visited left to right in blocks of `blocksize`: column i is rounded
onto the grid, q = quant(w_i), and its scaled error err = (w_i - q) / U_ii reaches the later columns
of the block through row i of U (W[:, i:] -= err U[i, i:], the optimal-brain-quantizer update of the
not-yet-quantized columns); the block's errors reach the columns after it in one matmul (lazy batch
update). The result equals the textbook update that inverts the Hessian of the remaining columns
at every step (tests/test_gptq.py checks it).

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

from lp_prune.errors import ConfigError
from lp_prune.pruning.grid import QuantGrid, stacked_grid
from lp_prune.pruning.method import (
    GroupInputs,
    LocalError,
    PrunedWeight,
    PruneSettings,
    Runtime,
    Statistics,
    register,
)
from lp_prune.pruning.quantize import check_quantization, grid_params, group_columns, quantize
from lp_prune.pruning.sparsegpt import drop_dead_inputs, inverse_hessian_factor, sparsegpt_hessian


@dataclass
class GPTQResult:
    weight: torch.Tensor  # dequantized weight, original dtype and device
    loss: float  # sum (w - q)^2 / U_ii^2 / 2: GPTQ's own error estimate
    percdamp: float  # the damping finally used
    grid: QuantGrid  # the grid `weight` lies on


@dataclass
class RowGrid:
    """The grid of the columns being visited: per row, as 1-D vectors."""

    scale: torch.Tensor
    zero: torch.Tensor


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
    W = torch.cat([weight.detach().float() for weight in weights])  # a new tensor, never a view
    H = hessian if in_place and hessian.dtype == torch.float32 else hessian.detach().float().clone()
    columns = W.shape[1]
    if group_size is not None and (group_size < 1 or columns % group_size):
        raise ConfigError(f"prune.group_size {group_size} does not divide a Linear's input size {columns}")
    drop_dead_inputs(H, W)
    order = None
    if act_order:
        order = torch.argsort(torch.diagonal(H), descending=True, stable=True)
        W = W[:, order]
        H = H[order][:, order]
    with factorisation():
        U, used_percdamp = inverse_hessian_factor(H, percdamp, in_place=True)
    del H
    grid = RowGrid(*(p.squeeze(-1) for p in grid_params(W, bits, symmetric))) if group_size is None else None
    used = [] if grid is None else [grid]  # every group's grid, in visiting order
    loss = torch.zeros(W.shape[0], device=W.device)
    for start in range(0, columns, blocksize):
        end = min(start + blocksize, columns)
        with column_loop():
            grid, block_errors = _quantize_block(W, U, start, end, grid, loss, bits, group_size, symmetric, used)
        W[:, end:] -= block_errors @ U[start:end, end:]
    del U
    if order is not None:
        W = W[:, torch.argsort(order)]
    solved = stacked_grid([g.scale for g in used], [g.zero for g in used], bits, symmetric, group_size, order)
    results, top = [], 0
    for weight in weights:
        rows = slice(top, top + weight.shape[0])
        top += weight.shape[0]
        # Separate tensors: Linears sharing one storage would look tied to save_pretrained.
        new = W[rows].to(weight.dtype, copy=True) if len(weights) > 1 else W.to(weight.dtype)
        results.append(GPTQResult(new, float(loss[rows].sum()), used_percdamp, solved.rows(rows)))
    return results


def _quantize_block(
    W: torch.Tensor,
    U: torch.Tensor,
    start: int,
    end: int,
    grid: RowGrid | None,
    loss: torch.Tensor,
    bits: int,
    group_size: int | None,
    symmetric: bool,
    used: list[RowGrid],
) -> tuple[RowGrid | None, torch.Tensor]:
    """Quantize columns start..end of W in place (and add to `loss`, each new group's grid to `used`);
    return the grid in use after them and the block's scaled errors [rows, end - start].

    Works on the transposed block so that every column step reads and writes contiguous rows."""
    Wt = W[:, start:end].t().contiguous()  # [block columns, rows]
    U_block = U[start:end, start:end]
    d = torch.diagonal(U_block)
    errors_t = torch.empty_like(Wt)
    for i in range(end - start):
        column = start + i
        if group_size is not None and column % group_size == 0:
            grid = _group_grid(W, U, Wt, errors_t, start, end, column, group_size, bits, symmetric)
            used.append(grid)
        assert grid is not None
        q = quantize(Wt[i], grid.scale, grid.zero, bits)
        err = torch.div(Wt[i] - q, d[i], out=errors_t[i])
        # Row i of U carries the update of the block's later columns.
        Wt[i + 1 :].addr_(U_block[i, i + 1 :], err, alpha=-1.0)
        Wt[i] = q  # exactly on the grid
    W[:, start:end] = Wt.t()
    loss += errors_t.square().sum(dim=0) / 2
    return grid, errors_t.t()


def _group_grid(
    W: torch.Tensor,
    U: torch.Tensor,
    Wt: torch.Tensor,
    errors_t: torch.Tensor,
    start: int,
    end: int,
    column: int,
    group_size: int,
    bits: int,
    symmetric: bool,
) -> RowGrid:
    """The grid of the group starting at `column`, from its updated weights (`group_weights`)."""
    scale, zero = grid_params(group_weights(W, U, Wt, errors_t, start, end, column, group_size), bits, symmetric)
    return RowGrid(scale.squeeze(-1), zero.squeeze(-1))


def group_weights(
    W: torch.Tensor,
    U: torch.Tensor,
    Wt: torch.Tensor,
    errors_t: torch.Tensor,
    start: int,
    end: int,
    column: int,
    group_size: int,
) -> torch.Tensor:
    """The weights [rows, group_size] of the group starting at `column` with every earlier column's
    update applied: inside the block they are (Wt), after it the block's errors so far are added."""
    inside = Wt[column - start : min(column + group_size, end) - start].t()
    if column + group_size <= end:
        return inside
    later = slice(end, column + group_size)
    beyond = W[:, later] - errors_t[: column - start].t() @ U[start:column, later]
    return torch.cat([inside, beyond], dim=1)


class GPTQ:
    """Quantization with second-order error feedback: the Hessian H = 2/n X^T X from the Gram."""

    name = "gptq"
    statistics: Statistics = "gram"
    default_local_error: LocalError = "exact"  # the Gram is there anyway
    updates_kept_weights = True
    prunes = False  # quantizes: zeroes nothing, ignores prune.sparsity
    quantizes = True

    def solver_bytes(self, width: int, rows: int) -> int:
        # Gram copies and factors (one more with act_order's permuted copy); the stacked float32 rows
        # and their errors.
        return 16 * width * width + rows * width * 8

    def check(self, settings: PruneSettings) -> None:
        check_quantization(self.name, settings)

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        settings: PruneSettings,
        runtime: Runtime,
    ) -> list[PrunedWeight]:
        if inputs.gram is None:
            raise ValueError("gptq needs the Gram X^T X")
        hessian = sparsegpt_hessian(inputs.gram, inputs.samples)  # a new tensor: the solve may overwrite it
        results = gptq_quantize_stacked(
            weights,
            hessian,
            settings.bits,
            group_columns(settings),
            settings.symmetric,
            settings.act_order,
            settings.blocksize,
            settings.percdamp,
            runtime.column_loop,
            True,
            runtime.factorisation,
        )
        return [
            PrunedWeight(r.weight, torch.zeros_like(r.weight, dtype=torch.bool), r.loss, r.percdamp, r.grid)
            for r in results
        ]


register(GPTQ())
