"""The one optimal-brain-surgeon column solver behind SparseGPT, GPTQ and their joint method.

The three differ only in what a visited column w_i becomes, q_i: w_i with its pruned entries zeroed
(SparseGPT), w_i rounded onto a grid (GPTQ), or its kept entries rounded and its pruned ones 0
(joint). Everything else is one procedure, written once here so that the methods cannot drift apart.
With U the upper Cholesky factor of H^-1 (`hessian.py`), columns are visited left to right in blocks;
at column i the scaled error err = (w_i - q_i) / U_ii reaches the columns not yet visited through row
i of U, W[:, i+1:] -= err U[i, i+1:] (the OBS update restricted to them). Inside a block the updates
are applied column by column (on sub-blocks, whose errors reach the rest of the block in one matmul);
the block's errors reach the columns after it in one matmul (lazy batch updates: the same sums,
fewer passes over W). Reported loss: sum (w - q)^2 / U_ii^2 / 2.

Masks (`Pruning`, True = pruned): unstructured, the lowest `sparsity` fraction of w^2 / U_ii^2 over
each block of columns when the block starts; N:M, the N lowest of every M columns in each row when
the group starts, on the updated weights. Grids (`Quantizer`, `quantize.py`): one per row from the
whole row before the loop, or one per row and group of g columns from the group's updated weights
when its first column comes, pruned entries known by then counted as 0. 0 is always on the grid, so
pruned weights stay exactly 0. Everything is float32; the column loop works on a transposed copy of
the block so that each column step reads and writes contiguous memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

import torch

from lp_prune.errors import ConfigError
from lp_prune.pruning.grid import QuantGrid, stacked_grid
from lp_prune.pruning.hessian import drop_dead_inputs, inverse_hessian_factor
from lp_prune.pruning.masks import lowest_mask, n_m_mask, pruned_count
from lp_prune.pruning.method import PruneContext, PruningMethod
from lp_prune.pruning.quantize import grid_params, quantize

SUB_BLOCK = 32  # columns per inner lazy update inside a block (rounded up to whole N:M groups)


@dataclass(frozen=True)
class SolverSettings(PruningMethod):
    """The settings of the methods that run this solver (sparsegpt, gptq, sparsegpt_gptq)."""

    blocksize: int = 128
    """Columns per block of the second-order solve (unstructured masks are chosen per block)."""
    percdamp: float = 0.01
    """Damping added to the Hessian diagonal, as a fraction of its mean."""

    def validate(self) -> None:
        super().validate()
        if self.blocksize < 1:
            raise ConfigError(f"prune.blocksize must be at least 1, got {self.blocksize}")
        if not 0.0 < self.percdamp < 10.0:
            raise ConfigError(f"prune.percdamp must lie in (0, 10), got {self.percdamp}")

    def check_blocks(self, context: PruneContext) -> None:
        """N:M masks are chosen within blocks: the blocksize must hold whole groups of M."""
        if context.n_m is not None and self.blocksize % context.n_m[1]:
            raise ConfigError(
                f"prune.blocksize {self.blocksize} must be a multiple of M={context.n_m[1]} for N:M {self.name}"
            )


@dataclass(frozen=True)
class Pruning:
    """SparseGPT's mask choice. `parts`: the rows of each weight of a stacked solve; an unstructured
    block's count is chosen per part, so each weight keeps its own sparsity whatever its scale."""

    sparsity: float
    n_m: tuple[int, int] | None = None
    parts: tuple[slice, ...] = (slice(None),)


@dataclass(frozen=True)
class Quantizer:
    """GPTQ's grid: 2^bits levels, per row (`group_size` None) or per row and group of columns."""

    bits: int
    symmetric: bool = False
    group_size: int | None = None


@dataclass
class RowGrid:
    """The grid of the columns being visited: per row, as 1-D vectors."""

    scale: torch.Tensor
    zero: torch.Tensor


@dataclass
class ColumnSolve:
    mask: torch.Tensor | None  # True where pruned; None without `Pruning`
    loss: torch.Tensor  # per row: sum (w - q)^2 / U_ii^2 / 2
    grids: list[RowGrid] = field(default_factory=list)  # every group's grid in visiting order


def solve_columns(
    W: torch.Tensor,
    U: torch.Tensor,
    blocksize: int,
    pruning: Pruning | None = None,
    quantizer: Quantizer | None = None,
    column_loop: Callable[[], AbstractContextManager] = nullcontext,
    sub_block: int | None = None,
) -> ColumnSolve:
    """Visit every column of the float32 W [rows, d] in place, pruning and/or quantizing it; U [d, d]
    is the upper Cholesky factor of H^-1. `column_loop` wraps each block's column-by-column loop
    (the caller's thread tuning); the block's lazy update runs outside it.

    `sub_block`: columns per inner lazy update (rounded up to whole N:M groups). By default SUB_BLOCK
    when only pruning, and the whole block with a quantizer, the reference implementations' order:
    rounding is discontinuous, so another summation order moves some weights to a neighbouring grid
    level (and sub-blocks measured no faster there at d = 2048 on CPU).
    """
    if pruning is None and quantizer is None:
        raise ValueError("the column solver needs a mask chooser, a quantizer or both")
    if sub_block is None:
        sub_block = SUB_BLOCK if quantizer is None else blocksize
    sweep = _Sweep(W, U, pruning, quantizer, sub_block)
    for start in range(0, W.shape[1], blocksize):
        end = min(start + blocksize, W.shape[1])
        with column_loop():
            errors = sweep.block(start, end)
        W[:, end:] -= errors @ U[start:end, end:]
    return ColumnSolve(sweep.mask, sweep.loss, sweep.grids)


class _Sweep:
    """The state of one left-to-right visit: W, its mask, loss and grids so far."""

    def __init__(
        self, W: torch.Tensor, U: torch.Tensor, pruning: Pruning | None, quantizer: Quantizer | None, sub_block: int
    ):
        self.W, self.U, self.pruning, self.quantizer = W, U, pruning, quantizer
        self.mask = torch.zeros_like(W, dtype=torch.bool) if pruning is not None else None
        self.loss = torch.zeros(W.shape[0], device=W.device)
        self.grids: list[RowGrid] = []
        self.grid: RowGrid | None = None
        if quantizer is not None and quantizer.group_size is None:
            self.grid = _row_grid(W, quantizer)
            self.grids.append(self.grid)
        m = pruning.n_m[1] if pruning is not None and pruning.n_m is not None else 1
        self.sub = -(-sub_block // m) * m  # sub-blocks hold whole N:M groups

    def block(self, start: int, end: int) -> torch.Tensor:
        """Visit columns start..end; return their scaled errors [rows, end - start]."""
        pruning, quantizer, mask = self.pruning, self.quantizer, self.mask
        n_m = pruning.n_m if pruning is not None else None
        U_block = self.U[start:end, start:end]
        d = torch.diagonal(U_block)
        if pruning is not None and n_m is None:
            self._choose_block_mask(start, end, d)
        Wt = self.W[:, start:end].t().contiguous()  # [block columns, rows]
        errors_t = torch.empty_like(Wt)
        mask_t = scale_t = keep_t = None
        if mask is not None:
            mask_t = mask[:, start:end].t().contiguous()
            if quantizer is None:  # err = w * (1 / d_i where pruned, 0 where kept): one multiplication
                scale_t = mask_t.to(Wt.dtype) / d[:, None]
            else:
                keep_t = ~mask_t
        width = end - start
        for sub_start in range(0, width, self.sub):
            sub_end = min(sub_start + self.sub, width)
            for i in range(sub_start, sub_end):
                if n_m is not None and i % n_m[1] == 0:
                    group = slice(i, i + n_m[1])
                    mask_t[group] = n_m_mask((Wt[group].square() / d[group, None].square()).t(), *n_m).t()
                    if scale_t is not None:
                        scale_t[group] = mask_t[group].to(Wt.dtype) / d[group, None]
                    else:
                        keep_t[group] = ~mask_t[group]
                if quantizer is None:
                    err = torch.mul(Wt[i], scale_t[i], out=errors_t[i])
                else:
                    if quantizer.group_size is not None and (start + i) % quantizer.group_size == 0:
                        self._start_group(Wt, errors_t, mask_t, start, end, sub_start, sub_end, i)
                    kept = Wt[i] if keep_t is None else Wt[i] * keep_t[i]
                    q = quantize(kept, self.grid.scale, self.grid.zero, quantizer.bits)
                    err = torch.div(Wt[i] - q, d[i], out=errors_t[i])
                # Row i of U carries the OBS update to the later columns of the sub-block.
                Wt[i + 1 : sub_end].addr_(U_block[i, i + 1 : sub_end], err, alpha=-1.0)
                if quantizer is not None:
                    Wt[i] = q  # exactly on the grid
            Wt[sub_end:].addmm_(U_block[sub_start:sub_end, sub_end:].T, errors_t[sub_start:sub_end], alpha=-1.0)
        if scale_t is not None:  # pruning alone left the pruned entries as they were; quantized ones are 0
            Wt.masked_fill_(mask_t, 0.0)
        if mask_t is not None:
            mask[:, start:end] = mask_t.t()
        self.W[:, start:end] = Wt.t()
        self.loss += errors_t.square().sum(dim=0) / 2
        return errors_t.t()

    def _choose_block_mask(self, start: int, end: int, d: torch.Tensor) -> None:
        """Unstructured: the lowest `sparsity` of the block's scores, per part."""
        assert self.pruning is not None and self.mask is not None
        scores = self.W[:, start:end].square() / d.square()
        for rows in self.pruning.parts:
            part = scores[rows]
            count = pruned_count(part.numel(), self.pruning.sparsity)
            self.mask[rows, start:end] = lowest_mask(part.reshape(1, -1), count).view_as(part)

    def _start_group(
        self,
        Wt: torch.Tensor,
        errors_t: torch.Tensor,
        mask_t: torch.Tensor | None,
        start: int,
        end: int,
        sub_start: int,
        sub_end: int,
        i: int,
    ) -> None:
        """The grid of the group starting at block column i, from its updated weights; entries known
        to be pruned by now (in this block: no later block's mask is chosen yet) count as 0."""
        assert self.quantizer is not None and self.quantizer.group_size is not None
        size = self.quantizer.group_size
        weights = _group_weights(self.W, self.U, Wt, errors_t, start, end, sub_start, sub_end, i, size)
        if mask_t is not None:
            known = torch.ones_like(weights, dtype=torch.bool)
            inside = mask_t[i : i + size]
            known[:, : inside.shape[0]] = ~inside.t()
            weights = weights * known
        self.grid = _row_grid(weights, self.quantizer)
        self.grids.append(self.grid)


def _row_grid(weights: torch.Tensor, quantizer: Quantizer) -> RowGrid:
    scale, zero = grid_params(weights, quantizer.bits, quantizer.symmetric)
    return RowGrid(scale.squeeze(-1), zero.squeeze(-1))


def _group_weights(
    W: torch.Tensor,
    U: torch.Tensor,
    Wt: torch.Tensor,
    errors_t: torch.Tensor,
    start: int,
    end: int,
    sub_start: int,
    sub_end: int,
    i: int,
    size: int,
) -> torch.Tensor:
    """Columns start+i .. start+i+size [rows, size] with every earlier column's update applied. The
    lazy updates have not reached all of them yet: the sub-block's columns (Wt) are current, the
    block's later ones lack this sub-block's errors so far, and those after the block lack the block's."""
    width = end - start
    top = min(i + size, width)
    pieces = [Wt[i : min(top, sub_end)].t()]
    if top > sub_end:
        pending = U[start + sub_start : start + i, start + sub_end : start + top].T @ errors_t[sub_start:i]
        pieces.append((Wt[sub_end:top] - pending).t())
    if i + size > width:
        later = slice(end, start + i + size)
        pieces.append(W[:, later] - errors_t[:i].t() @ U[start : start + i, later])
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)


@dataclass
class Piece:
    """One weight's share of a stacked solve, as tensors of its own."""

    weight: torch.Tensor  # the new weight in the input's dtype
    mask: torch.Tensor | None
    loss: float
    grid: QuantGrid | None


@dataclass
class Solved:
    weight: torch.Tensor  # float32, the stacked rows, columns in their original order
    mask: torch.Tensor | None
    loss: torch.Tensor  # per row
    percdamp: float  # the damping finally used
    grid: QuantGrid | None
    parts: list[slice]

    def pieces(self, weights: Sequence[torch.Tensor]) -> list[Piece]:
        """Each weight's rows. Several get copies: Linears sharing one storage would look tied to
        save_pretrained; one alone gets the solve's own tensors (no copy when already float32)."""
        if len(weights) == 1:
            return [Piece(self.weight.to(weights[0].dtype), self.mask, float(self.loss.sum()), self.grid)]
        return [
            Piece(
                self.weight[rows].to(weight.dtype, copy=True),
                None if self.mask is None else self.mask[rows].clone(),
                float(self.loss[rows].sum()),
                None if self.grid is None else self.grid.rows(rows),
            )
            for rows, weight in zip(self.parts, weights, strict=True)
        ]


def solve(
    weights: Sequence[torch.Tensor],
    hessian: torch.Tensor,
    blocksize: int,
    percdamp: float,
    pruning: Pruning | None = None,
    quantizer: Quantizer | None = None,
    act_order: bool = False,
    column_loop: Callable[[], AbstractContextManager] = nullcontext,
    in_place: bool = False,
    factorisation: Callable[[], AbstractContextManager] = nullcontext,
) -> Solved:
    """Prune and/or quantize weights that read the same input in one solve: their rows stacked, H's
    dead inputs dropped, H factorised once (inside `factorisation`), the columns visited once. Every
    update is per row, so each weight gets its own solve's result up to float32 rounding.

    act_order visits the columns in descending diag(H) (the inputs with the most energy first), then
    undoes the permutation; groups are consecutive visited columns. `in_place=True` lets the solve
    overwrite `hessian` (a float32 tensor the caller no longer needs) instead of copying it.
    """
    W = torch.cat([weight.detach().float() for weight in weights])  # a new tensor, never a view
    H = hessian if in_place and hessian.dtype == torch.float32 else hessian.detach().float().clone()
    columns = W.shape[1]
    size = quantizer.group_size if quantizer is not None else None
    if size is not None and (size < 1 or columns % size):
        raise ConfigError(f"prune.group_size {size} does not divide a Linear's input size {columns}")
    n_m = pruning.n_m if pruning is not None else None
    if n_m is not None and (blocksize % n_m[1] or columns % n_m[1]):
        raise ValueError(f"N:M pruning needs blocksize and d_in ({columns}) to be multiples of M={n_m[1]}")
    parts, top = [], 0
    for weight in weights:
        parts.append(slice(top, top + weight.shape[0]))
        top += weight.shape[0]
    drop_dead_inputs(H, W)
    order = None
    if act_order:
        order = torch.argsort(torch.diagonal(H), descending=True, stable=True)
        W = W[:, order]
        H = H[order][:, order]
    with factorisation():
        U, used_percdamp = inverse_hessian_factor(H, percdamp, in_place=True)
    del H
    if pruning is not None:
        pruning = replace(pruning, parts=tuple(parts))
    solved = solve_columns(W, U, blocksize, pruning, quantizer, column_loop)
    del U
    mask = solved.mask
    if order is not None:
        undo = torch.argsort(order)
        W = W[:, undo]
        mask = None if mask is None else mask[:, undo]
    grid = None
    if quantizer is not None:
        scales, zeros = [g.scale for g in solved.grids], [g.zero for g in solved.grids]
        grid = stacked_grid(scales, zeros, quantizer.bits, quantizer.symmetric, size, order)
    return Solved(W, mask, solved.loss, used_percdamp, grid, parts)
