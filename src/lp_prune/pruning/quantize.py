"""The uniform quantization grid of GPTQ and round-to-nearest: pure tensor functions, and the grid's
settings (`GridSettings`, the base of the methods that quantize) with their checks.

A grid has 2^bits levels, w' = scale * (q - zero) for the integer codes q in [0, 2^bits - 1], with
one (scale, zero) per output row ("per channel") or per row and group of `group_size` consecutive
input columns. Parameters are computed over the last dimension of what they are given:

- asymmetric: the range [min(w_min, 0), max(w_max, 0)] (it always holds 0, as in IST-DASLab/gptq's
  quantizer), scale = (max - min) / (2^bits - 1), zero = round(-min / scale);
- symmetric: m = max |w|, scale = 2 m / (2^bits - 1), zero = 2^(bits - 1) (the middle of the grid).

A row (or group) of zeros gets the range [-1, 1], so its scale is never 0 (its weights stay 0).
Quantizing: q = clamp(round(w / scale) + zero, 0, 2^bits - 1); w' = scale * (q - zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lp_prune.errors import ConfigError
from lp_prune.pruning.grid import QuantGrid
from lp_prune.pruning.method import PruneContext, PruningMethod

BITS = range(2, 9)  # supported bits per weight


def levels(bits: int) -> int:
    """The largest code, 2^bits - 1."""
    return 2**bits - 1


def grid_params(weight: torch.Tensor, bits: int, symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) over the last dimension of `weight`, kept as a size-1 dimension (float32)."""
    w = weight.float()
    maxq = levels(bits)
    low = w.amin(dim=-1, keepdim=True).clamp(max=0)
    high = w.amax(dim=-1, keepdim=True).clamp(min=0)
    if symmetric:
        high = torch.maximum(-low, high)
        low = -high
    empty = (low == 0) & (high == 0)
    low = torch.where(empty, -1.0, low)
    high = torch.where(empty, 1.0, high)
    scale = (high - low) / maxq
    zero = torch.full_like(scale, float(2 ** (bits - 1))) if symmetric else torch.round(-low / scale)
    return scale, zero


def quantize_codes(weight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """The integer codes q = clamp(round(w / scale) + zero, 0, 2^bits - 1) (as float32 values)."""
    return torch.clamp(torch.round(weight.float() / scale) + zero, 0, levels(bits))


def dequantize(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """w' = scale * (q - zero)."""
    return scale * (codes - zero)


def quantize(weight: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """`weight` rounded onto the grid (scale, zero): the dequantized float32 values."""
    return dequantize(quantize_codes(weight, scale, zero, bits), scale, zero)


def grouped(weight: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """A [rows, d_in] view as [rows, d_in / group_size, group_size] (one group per row: per channel)."""
    rows, columns = weight.shape
    size = columns if group_size is None else group_size
    if columns % size:
        raise ValueError(f"group size {size} does not divide the input size {columns}")
    return weight.reshape(rows, columns // size, size)


def round_to_nearest(
    weight: torch.Tensor, bits: int, group_size: int | None = None, symmetric: bool = False
) -> torch.Tensor:
    """Round-to-nearest: each row (or group) on its own grid from its own weights; float32 result."""
    return round_to_nearest_on_grid(weight, bits, group_size, symmetric)[0]


def round_to_nearest_on_grid(
    weight: torch.Tensor, bits: int, group_size: int | None = None, symmetric: bool = False
) -> tuple[torch.Tensor, QuantGrid]:
    """`round_to_nearest`'s float32 weight, and the grid it lies on."""
    groups = grouped(weight.float(), group_size)
    scale, zero = grid_params(groups, bits, symmetric)
    new = quantize(groups, scale, zero, bits).reshape(weight.shape)
    return new, QuantGrid(scale.squeeze(-1), zero.squeeze(-1), bits, symmetric, group_size)


@dataclass(frozen=True)
class GridSettings(PruningMethod):
    """The settings of the methods that round onto this grid (gptq, rtn, sparsegpt_gptq)."""

    bits: int = 4
    """Bits per weight, 2 to 8 (a grid of 2^bits levels)."""
    group_size: int | None = None
    """Input columns sharing one scale and zero (must divide every Linear input size); null or -1: one per
    output row."""
    symmetric: bool = False
    """A grid symmetric around 0 (scale from max |w|), instead of min-max with a zero point."""

    @property
    def columns_per_grid(self) -> int | None:
        """Input columns per grid: None for one grid per output row (group_size None or -1)."""
        return None if self.group_size in (None, -1) else self.group_size

    def validate(self) -> None:
        super().validate()
        if self.group_size is not None and self.group_size < 1 and self.group_size != -1:
            raise ConfigError(
                f"prune.group_size must be positive, or -1 / null for one grid per row, got {self.group_size}"
            )

    def check_grid(self, context: PruneContext) -> None:
        """Refuse bits and group sizes the grid cannot honour: one line, before any work."""
        if isinstance(self.bits, bool) or self.bits not in BITS:
            raise ConfigError(
                f"prune.bits must be an integer from {BITS[0]} to {BITS[-1]} for {self.name}, got {self.bits}"
            )
        size = self.columns_per_grid
        if size is None:
            return
        if size < 1:
            raise ConfigError(
                f"prune.group_size must be positive, or -1 / null for one grid per output row, got {size}"
            )
        misfits = sorted(width for width in set(context.input_sizes) if width % size)
        if misfits:
            raise ConfigError(
                f"prune.group_size {size} must divide every Linear input size of this model "
                f"({', '.join(map(str, sorted(set(context.input_sizes))))}); {', '.join(map(str, misfits))} "
                "are not multiples of it"
            )

    def check_quantization_only(self, context: PruneContext) -> None:
        """`check_grid`, and no N:M pattern: a method that only quantizes prunes nothing."""
        if context.n_m is not None:
            raise ConfigError(f"{self.name} quantizes and prunes nothing: it needs prune.pattern unstructured, not N:M")
        self.check_grid(context)
