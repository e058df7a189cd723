"""Round-to-nearest quantization: the calibration-free baseline of GPTQ, the same grid applied to W."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lp_prune.errors import ConfigError
from lp_prune.pruning.method import GroupInputs, PruneContext, PrunedWeight, Runtime
from lp_prune.pruning.quantize import GridSettings, round_to_nearest_on_grid
from lp_prune.pruning.registry import register


@register
@dataclass(frozen=True)
class RoundToNearest(GridSettings):
    """Each row (or group of input columns) on its own grid, from its own weights: the same weights
    whatever the calibration language."""

    name = "rtn"
    display_name = "RTN"
    statistics = "none"
    updates_kept_weights = True  # masks cannot rebuild quantized weights
    zeroes = False  # quantizes: zeroes nothing, ignores prune.sparsity
    quantizes = True
    export_format = "pack-quantized"

    def solver_bytes(self, width: int, rows: int) -> int:
        return rows * width * 8  # the float32 weight and its codes

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
        size = self.columns_per_grid
        results = []
        for weight in weights:
            if size is not None and weight.shape[1] % size:
                raise ConfigError(f"prune.group_size {size} does not divide a Linear's input size {weight.shape[1]}")
            new, grid = round_to_nearest_on_grid(weight.detach(), self.bits, size, self.symmetric)
            results.append(PrunedWeight(new.to(weight.dtype), torch.zeros_like(new, dtype=torch.bool), grid=grid))
        return results
