"""Round-to-nearest quantization: the calibration-free baseline of GPTQ, the same grid applied to W."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lp_prune.errors import ConfigError
from lp_prune.pruning.method import (
    GroupInputs,
    LocalError,
    PrunedWeight,
    PruneSettings,
    Runtime,
    Statistics,
    register,
)
from lp_prune.pruning.quantize import check_quantization, group_columns, round_to_nearest_on_grid


class RoundToNearest:
    """Each row (or group of input columns) on its own grid, from its own weights: the same weights
    whatever the calibration language."""

    name = "rtn"
    statistics: Statistics = "none"
    default_local_error: LocalError = "sample"
    updates_kept_weights = True  # masks cannot rebuild quantized weights
    prunes = False  # quantizes: zeroes nothing, ignores prune.sparsity
    quantizes = True

    def solver_bytes(self, width: int, rows: int) -> int:
        return rows * width * 8  # the float32 weight and its codes

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
        size = group_columns(settings)
        results = []
        for weight in weights:
            if size is not None and weight.shape[1] % size:
                raise ConfigError(f"prune.group_size {size} does not divide a Linear's input size {weight.shape[1]}")
            new, grid = round_to_nearest_on_grid(weight.detach(), settings.bits, size, settings.symmetric)
            results.append(PrunedWeight(new.to(weight.dtype), torch.zeros_like(new, dtype=torch.bool), grid=grid))
        return results


register(RoundToNearest())
