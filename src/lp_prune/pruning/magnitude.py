"""Magnitude pruning baseline: prune the smallest |W| over the whole matrix (or per N:M group)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lp_prune.pruning.masks import score_mask
from lp_prune.pruning.method import GroupInputs, MaskOnlyMethod, PruneContext
from lp_prune.pruning.registry import register


def magnitude_mask(weight: torch.Tensor, sparsity: float, n_m: tuple[int, int] | None = None) -> torch.Tensor:
    return score_mask(weight.detach().abs().float(), sparsity, n_m, per_row=False)


@register
@dataclass(frozen=True)
class Magnitude(MaskOnlyMethod):
    """The calibration-free baseline: the same mask whatever the language."""

    name = "magnitude"
    statistics = "none"

    def mask(self, weight: torch.Tensor, sparsity: float, inputs: GroupInputs, context: PruneContext) -> torch.Tensor:
        return magnitude_mask(weight, sparsity, context.n_m)
