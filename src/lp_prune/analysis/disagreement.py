"""Where the masks of different calibration languages disagree, per row and per column.

For one Linear and K masks (one per calibration language), a position is disputed when some masks
prune it and others keep it: OR & ~AND of the packed bytes (padding bits are zero in every mask, so
they never count). Per-row and per-column disputed rates say which output rows or input columns
carry the disagreement: columns of a Linear are its input features (for down_proj the FFN
neurons), rows its outputs (for gate/up_proj the FFN neurons).

Shared by both features: `lp-prune compare` reports the disagreement per projection, `lp-prune
analyze` per layer and against the LAPE neurons (analyze/mask_structure.py).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import torch

from lp_prune.analysis.iou import popcount
from lp_prune.tracking import mask_names, packed_masks, unpack_mask

TOP_SHARE = 0.1  # concentration: the share of disputed positions in the 10% most disputed rows / columns


@dataclass
class MaskDisagreement:
    rate: float  # share of disputed positions
    pairwise: float  # mean over language pairs of the share of positions where the two masks differ
    row_rate: torch.Tensor  # [rows] share of disputed positions in each row
    col_rate: torch.Tensor  # [cols]

    def summary(self, top: int = 5) -> dict[str, Any]:
        """Plain numbers: rates, how unevenly rows / columns carry the disagreement, the worst ones."""
        return {
            "rate": self.rate,
            "pairwise": self.pairwise,
            "row_cv": coefficient_of_variation(self.row_rate),
            "col_cv": coefficient_of_variation(self.col_rate),
            "row_top_share": top_share(self.row_rate, TOP_SHARE),
            "col_top_share": top_share(self.col_rate, TOP_SHARE),
            "top_rows": torch.topk(self.row_rate, min(top, self.row_rate.numel())).indices.tolist(),
            "top_cols": torch.topk(self.col_rate, min(top, self.col_rate.numel())).indices.tolist(),
        }


def mask_disagreement(packed: Sequence[torch.Tensor], shape: Sequence[int]) -> MaskDisagreement:
    """Disagreement of K >= 2 packed uint8 masks of one 2-D Linear."""
    if len(packed) < 2:
        raise ValueError("disagreement needs the masks of at least two calibration languages")
    union = reduce(torch.bitwise_or, packed)
    both = reduce(torch.bitwise_and, packed)
    disputed = unpack_mask(union & ~both, shape).float()
    numel = math.prod(shape)
    pairs = [popcount(a ^ b) / numel for a, b in itertools.combinations(packed, 2)]
    return MaskDisagreement(
        rate=float(disputed.mean()),
        pairwise=statistics.fmean(pairs),
        row_rate=disputed.mean(1),
        col_rate=disputed.mean(0),
    )


def coefficient_of_variation(values: torch.Tensor) -> float:
    """std / mean: 0 when every row (column) is disputed equally often."""
    mean = float(values.mean())
    return float(values.std(correction=0)) / mean if mean > 0 else float("nan")


def top_share(values: torch.Tensor, fraction: float) -> float:
    """Share of the total held by the top `fraction` of entries (`fraction` itself when spread evenly)."""
    total = float(values.sum())
    k = max(1, round(values.numel() * fraction))
    return float(torch.topk(values, k).values.sum()) / total if total > 0 else float("nan")


def setting_disagreement(run_dirs: Mapping[str, Path]) -> dict[str, MaskDisagreement]:
    """Per module, the disagreement between runs of one setting (one run per calibration language).

    Reads one module of every run at a time, so memory holds K packed masks, not K models' worth.
    """
    paths = list(run_dirs.values())
    others = [set(mask_names(path)) for path in paths[1:]]
    common = [name for name in mask_names(paths[0]) if all(name in names for names in others)]
    result = {}
    for name in common:
        packed, shape = [], ()
        for path in paths:
            _, tensor, shape = next(packed_masks(path, [name]))
            packed.append(tensor)
        if len(shape) == 2:
            result[name] = mask_disagreement(packed, shape)
    return result
