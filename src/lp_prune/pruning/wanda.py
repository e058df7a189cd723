"""Wanda (Sun et al., 2024): score |W_ij| * ||X_j||_2, compared within each output row."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lp_prune.pruning.masks import score_mask
from lp_prune.pruning.method import GroupInputs, MaskOnlyMethod, PruneContext
from lp_prune.pruning.registry import register


def wanda_scores(weight: torch.Tensor, input_sq_norms: torch.Tensor) -> torch.Tensor:
    """|W| scaled by the L2 norm of each input feature over all calibration tokens."""
    return weight.detach().abs().float() * input_sq_norms.float().sqrt().unsqueeze(0)


def wanda_mask(
    weight: torch.Tensor,
    input_sq_norms: torch.Tensor,
    sparsity: float,
    n_m: tuple[int, int] | None = None,
) -> torch.Tensor:
    return score_mask(wanda_scores(weight, input_sq_norms), sparsity, n_m, per_row=True)


@register
@dataclass(frozen=True)
class Wanda(MaskOnlyMethod):
    name = "wanda"
    display_name = "Wanda"
    statistics = "norms"

    def mask(self, weight: torch.Tensor, sparsity: float, inputs: GroupInputs, context: PruneContext) -> torch.Tensor:
        if inputs.sq_norms is None:
            raise ValueError("wanda needs the squared input norms")
        return wanda_mask(weight, inputs.sq_norms, sparsity, context.n_m)
