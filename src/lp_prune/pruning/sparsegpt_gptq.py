"""SparseGPT's joint sparsification and quantization (Frantar & Alistarh, 2023, section 3.5): prune and
quantize a Linear in one column loop, e.g. 50% + 4-bit.

The Hessian, damping and the upper Cholesky factor U of H^-1 are SparseGPT's; masks are chosen as in
`sparsegpt.py` (unstructured per block of columns from w^2 / U_ii^2, or N:M per group of M columns on
the updated weights). At column i the kept weights are rounded onto the grid and the pruned ones set
to 0, q = quant(w_i * keep_i), and the scaled error err = (w_i - q) / U_ii reaches the later columns
through row i of U, as in GPTQ (`gptq.py`): one error feedback covers both the pruning and the rounding.

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
from lp_prune.pruning.gptq import RowGrid, group_weights
from lp_prune.pruning.grid import QuantGrid, stacked_grid
from lp_prune.pruning.masks import lowest_mask, n_m_mask, pruned_count
from lp_prune.pruning.method import (
    GroupInputs,
    LocalError,
    PrunedWeight,
    PruneSettings,
    Runtime,
    Statistics,
    register,
)
from lp_prune.pruning.quantize import check_grid, grid_params, group_columns, quantize
from lp_prune.pruning.sparsegpt import drop_dead_inputs, inverse_hessian_factor, sparsegpt_hessian


@dataclass
class JointResult:
    weight: torch.Tensor  # pruned and dequantized weight, original dtype and device
    mask: torch.Tensor  # True where pruned
    loss: float  # sum (w - q)^2 / U_ii^2 / 2
    percdamp: float  # the damping finally used
    grid: QuantGrid  # the grid `weight` lies on (pruned entries: code = zero)


@dataclass(frozen=True)
class _Settings:
    sparsity: float
    bits: int
    group_size: int | None
    symmetric: bool
    n_m: tuple[int, int] | None


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
    W = torch.cat([weight.detach().float() for weight in weights])  # a new tensor, never a view
    H = hessian if in_place and hessian.dtype == torch.float32 else hessian.detach().float().clone()
    columns = W.shape[1]
    if group_size is not None and (group_size < 1 or columns % group_size):
        raise ConfigError(f"prune.group_size {group_size} does not divide a Linear's input size {columns}")
    if n_m is not None and (blocksize % n_m[1] or columns % n_m[1]):
        raise ValueError(f"N:M pruning needs blocksize and d_in ({columns}) to be multiples of M={n_m[1]}")
    drop_dead_inputs(H, W)
    with factorisation():
        U, used_percdamp = inverse_hessian_factor(H, percdamp, in_place=True)
    del H
    settings = _Settings(sparsity, bits, group_size, symmetric, n_m)
    grid = RowGrid(*(p.squeeze(-1) for p in grid_params(W, bits, symmetric))) if group_size is None else None
    used = [] if grid is None else [grid]  # every group's grid, left to right
    parts, top = [], 0
    for weight in weights:
        parts.append(slice(top, top + weight.shape[0]))
        top += weight.shape[0]
    mask = torch.zeros_like(W, dtype=torch.bool)
    loss = torch.zeros(W.shape[0], device=W.device)
    for start in range(0, columns, blocksize):
        end = min(start + blocksize, columns)
        with column_loop():
            grid, block_errors = _block(W, U, mask, start, end, grid, loss, settings, parts, used)
        W[:, end:] -= block_errors @ U[start:end, end:]
    del U
    W.masked_fill_(mask, 0.0)
    solved = stacked_grid([g.scale for g in used], [g.zero for g in used], bits, symmetric, group_size)
    if len(weights) == 1:
        return [JointResult(W.to(weights[0].dtype), mask, float(loss.sum()), used_percdamp, solved)]
    # Separate tensors: Linears sharing one storage would look tied to save_pretrained.
    return [
        JointResult(
            W[rows].to(weight.dtype, copy=True),
            mask[rows].clone(),
            float(loss[rows].sum()),
            used_percdamp,
            solved.rows(rows),
        )
        for rows, weight in zip(parts, weights, strict=True)
    ]


def _block(
    W: torch.Tensor,
    U: torch.Tensor,
    mask: torch.Tensor,
    start: int,
    end: int,
    grid: RowGrid | None,
    loss: torch.Tensor,
    settings: _Settings,
    parts: list[slice],
    used: list[RowGrid],
) -> tuple[RowGrid | None, torch.Tensor]:
    """Prune and quantize columns start..end of W in place (mask and loss too, each new group's grid
    to `used`); return the grid in use after them and the block's scaled errors [rows, end - start].
    Works on the transposed block."""
    U_block = U[start:end, start:end]
    d = torch.diagonal(U_block)
    n_m = settings.n_m
    if n_m is None:
        scores = W[:, start:end].square() / d.square()
        for rows in parts:
            part = scores[rows]
            count = pruned_count(part.numel(), settings.sparsity)
            mask[rows, start:end] = lowest_mask(part.reshape(1, -1), count).view_as(part)
    Wt = W[:, start:end].t().contiguous()  # [block columns, rows]
    keep_t = (~mask[:, start:end]).t().contiguous()
    errors_t = torch.empty_like(Wt)
    for i in range(end - start):
        column = start + i
        if n_m is not None and i % n_m[1] == 0:  # the group's mask, on the updated weights
            group = slice(i, i + n_m[1])
            pruned = n_m_mask((Wt[group].square() / d[group, None].square()).t(), *n_m)
            mask[:, column : column + n_m[1]] = pruned
            keep_t[group] = ~pruned.t()
        if settings.group_size is not None and column % settings.group_size == 0:
            weights = group_weights(W, U, Wt, errors_t, start, end, column, settings.group_size)
            known = ~mask[:, column : column + settings.group_size]
            scale, zero = grid_params(weights * known, settings.bits, settings.symmetric)
            grid = RowGrid(scale.squeeze(-1), zero.squeeze(-1))
            used.append(grid)
        assert grid is not None
        q = quantize(Wt[i] * keep_t[i], grid.scale, grid.zero, settings.bits)
        err = torch.div(Wt[i] - q, d[i], out=errors_t[i])
        Wt[i + 1 :].addr_(U_block[i, i + 1 :], err, alpha=-1.0)  # row i of U: the later columns' update
        Wt[i] = q
    W[:, start:end] = Wt.t()
    loss += errors_t.square().sum(dim=0) / 2
    return grid, errors_t.t()


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
