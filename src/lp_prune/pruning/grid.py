"""The integer grid a quantized weight lies on, as the solve chose it: enough to store the weight as
integer codes and rebuild it exactly.

w = scale[:, group] * (q - zero[:, group]) for the codes q in [0, 2^bits - 1] (`quantize.py`), with one
(scale, zero) per output row and group. Groups are `group_size` consecutive input columns, or with
GPTQ's act_order `group_size` consecutive columns of the visiting order, named per column by `g_idx`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class QuantGrid:
    scale: torch.Tensor  # float32 [d_out, groups] (groups = 1 with one grid per output row)
    zero: torch.Tensor  # float32 [d_out, groups], integers in [0, 2^bits - 1]
    bits: int
    symmetric: bool
    group_size: int | None  # input columns per group; None: one group per output row
    g_idx: torch.Tensor | None = None  # int64 [d_in]: each column's group, where groups are not consecutive

    @property
    def groups(self) -> int:
        return self.scale.shape[1]

    def column_groups(self, columns: int) -> torch.Tensor:
        """The group of every input column, int64 [columns]."""
        if self.g_idx is not None:
            return self.g_idx.to(self.scale.device)
        size = columns if self.group_size is None else self.group_size
        return torch.arange(columns, device=self.scale.device) // size

    def codes(self, weight: torch.Tensor) -> torch.Tensor:
        """The integer codes (float32 values) of a weight that lies on this grid: exact for the solve's
        float32 weight. A weight cast to half precision after the solve may round nearer a neighbouring
        code (bfloat16 at 8 bits: 255 x 2^-8 is above 0.5), so there the code whose dequantized value casts
        back to the weight is kept."""
        index = self.column_groups(weight.shape[1])
        scale, zero = self.scale[:, index], self.zero[:, index]
        weight = weight.to(self.scale.device)
        top = 2**self.bits - 1
        codes = torch.clamp(torch.round(weight.float() / scale) + zero, 0, top)
        if weight.dtype == torch.float32:
            return codes
        for step in (-1.0, 1.0):  # the error of w / scale is below one code
            other = torch.clamp(codes + step, 0, top)
            wrong = (scale * (codes - zero)).to(weight.dtype) != weight
            codes = torch.where(wrong & ((scale * (other - zero)).to(weight.dtype) == weight), other, codes)
        return codes

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """scale * (q - zero), float32: the weight the solve returned (before any cast)."""
        index = self.column_groups(codes.shape[1])
        return self.scale[:, index] * (codes - self.zero[:, index])

    def rows(self, part: slice) -> QuantGrid:
        """The grid of some output rows (one weight of a stacked solve), as tensors of their own."""
        g_idx = None if self.g_idx is None else self.g_idx.clone()
        return replace(self, scale=self.scale[part].clone(), zero=self.zero[part].clone(), g_idx=g_idx)

    def to(self, device: torch.device | str) -> QuantGrid:
        g_idx = None if self.g_idx is None else self.g_idx.to(device)
        return replace(self, scale=self.scale.to(device), zero=self.zero.to(device), g_idx=g_idx)


def stacked_grid(
    scales: list[torch.Tensor],
    zeros: list[torch.Tensor],
    bits: int,
    symmetric: bool,
    group_size: int | None,
    order: torch.Tensor | None = None,
) -> QuantGrid:
    """The grid of one solve from its per-group (scale, zero) row vectors in visiting order; `order` is
    act_order's visiting order of the input columns (None: left to right)."""
    g_idx = None
    if order is not None and group_size is not None:
        g_idx = torch.argsort(order) // group_size  # a column's place in the visit names its group
    return QuantGrid(torch.stack(scales, dim=1), torch.stack(zeros, dim=1), bits, symmetric, group_size, g_idx)
