"""Intersection over union of pruning masks, computed on the bit-packed masks.

Masks are stored 8 positions per byte with zero padding, so popcounts of AND and OR of the packed
bytes are exactly |P_a & P_b| and |P_a | P_b|; nothing is unpacked.
"""

from __future__ import annotations

import torch

# Number of set bits of every byte value.
POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.int64)


def popcount(packed: torch.Tensor) -> int:
    return int(POPCOUNT[packed.long()].sum())


def packed_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of the pruned positions of two packed uint8 masks of the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"packed masks differ in size: {tuple(a.shape)} vs {tuple(b.shape)}")
    union = popcount(a | b)
    return popcount(a & b) / union if union else 1.0


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two boolean masks (True = pruned), for unpacked use."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def chance_iou(p: float, q: float) -> float:
    """Expected IoU of independent random masks pruning fractions p and q: pq / (p + q - pq).

    Two 50% masks give 1/3.
    """
    denominator = p + q - p * q
    return p * q / denominator if denominator else 1.0
