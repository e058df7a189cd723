"""Magnitude pruning baseline: prune the smallest |W| over the whole matrix (or per N:M group)."""

from __future__ import annotations

import torch

from lp_prune.pruning.masks import score_mask


def magnitude_mask(weight: torch.Tensor, sparsity: float, n_m: tuple[int, int] | None = None) -> torch.Tensor:
    return score_mask(weight.detach().abs().float(), sparsity, n_m, per_row=False)
