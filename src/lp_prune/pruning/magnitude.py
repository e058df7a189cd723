"""Magnitude pruning baseline: prune the smallest |W| over the whole matrix (or per N:M group)."""

from __future__ import annotations

import torch

from lp_prune.pruning.masks import score_mask
from lp_prune.pruning.method import GroupInputs, MaskOnlyMethod, PruneSettings, Statistics, register


def magnitude_mask(weight: torch.Tensor, sparsity: float, n_m: tuple[int, int] | None = None) -> torch.Tensor:
    return score_mask(weight.detach().abs().float(), sparsity, n_m, per_row=False)


class Magnitude(MaskOnlyMethod):
    """The calibration-free baseline: the same mask whatever the language."""

    name = "magnitude"
    statistics: Statistics = "none"

    def mask(self, weight: torch.Tensor, sparsity: float, inputs: GroupInputs, settings: PruneSettings) -> torch.Tensor:
        return magnitude_mask(weight, sparsity, settings.n_m)


register(Magnitude())
