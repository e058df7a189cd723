"""OWL: outlier-weighted layer-wise sparsity (Yin et al., ICML 2024).

Layers whose Wanda scores |W_ij| * ||X_j|| hold more outliers (scores above `threshold` times the
layer's mean score) are pruned less. With D_l the outlier ratio of layer l, OWL rescales the ratios
linearly to [0, 2 * lambda], shifts them so that their mean is the target density 1 - s, and prunes
layer l to sparsity 1 - density_l. Layer sparsities therefore span a range of width 2 * lambda
that contains s (within s - 2 lambda .. s + 2 lambda), and their plain (unweighted) mean is exactly
the target s.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class OutlierCount:
    """Outlier statistics of one layer, pooled over its Linears as OWL does (one mean per layer)."""

    def __init__(self) -> None:
        self.scores: list[torch.Tensor] = []

    def add(self, weight: torch.Tensor, sq_norms: torch.Tensor) -> None:
        """Add one Linear's Wanda scores (weight: d_out x d_in; sq_norms: ||X_j||^2 per input j)."""
        self.scores.append((weight.detach().float().abs() * sq_norms.float().sqrt()).flatten())

    def ratio(self, threshold: float) -> float:
        """Share of the layer's scores above threshold x their mean."""
        return outlier_ratio(self.scores, threshold)


def outlier_ratio(scores: Iterable[torch.Tensor], threshold: float) -> float:
    """Share of all given scores that exceed `threshold` times the mean of all of them."""
    pooled = torch.cat([s.flatten().float() for s in scores])
    if pooled.numel() == 0:
        raise ValueError("no scores to count outliers in")
    return float((pooled > threshold * pooled.mean()).double().mean())


def owl_sparsities(ratios: list[float], target: float, lam: float) -> list[float]:
    """Per-layer sparsity from per-layer outlier ratios: mean == target, max - min == 2 * lam."""
    r = torch.tensor(ratios, dtype=torch.float64)
    if r.numel() == 0:
        return []
    spread = r.max() - r.min()
    if spread == 0:  # no layer stands out: uniform sparsity
        return [target] * r.numel()
    scaled = (r - r.min()) / spread * (2 * lam)  # more outliers -> more density kept
    density = scaled - scaled.mean() + (1.0 - target)
    return (1.0 - density).tolist()
