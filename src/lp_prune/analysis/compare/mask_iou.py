"""How far the masks of different calibrations agree: mask IoU per module between calibration
languages, against the same-language floor and chance, aggregated per projection and layer; the
pooled IoU of two runs over all Linears; where the masks disagree, per projection."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from lp_prune.analysis.compare.groups import cross_language_runs, seed_pairs
from lp_prune.analysis.disagreement import setting_disagreement
from lp_prune.analysis.iou import chance_iou, packed_iou, popcount
from lp_prune.analysis.runs import Run
from lp_prune.models.layers import layer_index, projection
from lp_prune.tracking import mask_names, packed_masks

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def iou_tables(runs: list[Run]) -> dict[str, Any]:
    """Mask IoU for every pair of calibration languages, per module; aggregated per projection.

    "floor": the same per recipe for two of its runs with different calibration seeds (the IoU two
    calibration sets of one language reach); "floor_projection_layer" its mean over those recipes.
    """
    by_language = cross_language_runs(runs)
    languages = list(by_language)
    per_module: dict[tuple[str, str], dict[str, float]] = {}
    density: dict[tuple[str, str], float] = {}  # (recipe, module) -> pruned share
    for a, b in itertools.combinations(languages, 2):
        per_module[(a, b)] = _pair_iou(by_language[a].path, by_language[b].path, density, a)
    floor = {recipe: _pair_iou(a.path, b.path, {}, recipe) for recipe, (a, b) in seed_pairs(runs).items()}
    return {
        "floor": {recipe: _mean_by(values, projection) for recipe, values in floor.items()},
        "floor_projection_layer": _projection_layer_means({(r, r): v for r, v in floor.items()}),
        "languages": languages,
        "pairs": {f"{a}-{b}": values for (a, b), values in per_module.items()},
        "projection_layer": _projection_layer_means(per_module),
        "pair_projection": {
            f"{a}-{b}": _mean_by(values, lambda name: projection(name)) for (a, b), values in per_module.items()
        },
        "chance": _chance(density, runs[0].capabilities.masked_projections if runs else None),
    }


def _chance(density: dict[tuple[str, str], float], carried: tuple[str, ...] | None) -> float:
    """Chance IoU at the mean pruned share of the Linears that carry masks: all of them, or only a
    structured method's masked projections (the others' empty masks would dilute the share)."""
    shares = [d for (_, name), d in density.items() if carried is None or projection(name) in carried]
    if not shares:
        return math.nan
    mean = statistics.fmean(shares)
    return chance_iou(mean, mean)


def _pair_iou(path_a: Path, path_b: Path, density: dict[tuple[str, str], float], lang_a: str) -> dict[str, float]:
    """IoU per module of two runs, streaming one packed mask of each at a time."""
    values = {}
    names_b = set(mask_names(path_b))
    for name, packed_a, shape in packed_masks(path_a):
        if name in names_b:
            _, packed_b, _ = next(packed_masks(path_b, [name]))
            values[name] = packed_iou(packed_a, packed_b)
            density[(lang_a, name)] = popcount(packed_a) / math.prod(shape)
    return values


def pooled_mask_iou(run_a: str | Path, run_b: str | Path) -> tuple[float, float]:
    """IoU of two runs' pruned positions pooled over all their Linears (|A & B| / |A | B| summed over the
    modules of `run_a`), and the lowest IoU of any one module; popcounts of the packed masks, one module
    of each run at a time."""
    intersection = union = 0
    lowest = 1.0
    for name, packed_a, _ in packed_masks(run_a):
        _, packed_b, _ = next(packed_masks(run_b, [name]))
        both, either = popcount(packed_a & packed_b), popcount(packed_a | packed_b)
        intersection, union = intersection + both, union + either
        lowest = min(lowest, both / either if either else 1.0)
    return (intersection / union if union else 1.0), lowest


def _projection_layer_means(per_module: dict[tuple[str, str], dict[str, float]]) -> dict[str, list[float]]:
    """{projection: [mean IoU over language pairs, per layer]}."""
    cells: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for values in per_module.values():
        for name, value in values.items():
            cells[projection(name)][layer_index(name)].append(value)
    return {
        proj: [statistics.fmean(layers[i]) for i in sorted(layers)]
        for proj, layers in sorted(cells.items(), key=lambda item: _projection_order(item[0]))
    }


def _mean_by(values: dict[str, float], key) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for name, value in values.items():
        groups[key(name)].append(value)
    return {k: statistics.fmean(v) for k, v in sorted(groups.items(), key=lambda item: _projection_order(item[0]))}


def disagreement_by_projection(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Where the calibration languages' masks disagree, per projection (means over layers): the share of
    positions pruned by some languages but not all, and how unevenly rows / columns carry it (CV)."""
    by_language = {lang: run.path for lang, run in cross_language_runs(runs).items()}
    if len(by_language) < 2:
        return {}
    cells: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, disagreement in setting_disagreement(by_language).items():
        cells[projection(name)].append(disagreement.summary())
    return {
        proj: {key: statistics.fmean(c[key] for c in rows) for key in ("rate", "row_cv", "col_cv")}
        for proj, rows in sorted(cells.items(), key=lambda item: _projection_order(item[0]))
    }


def _projection_order(name: str) -> int:
    return PROJECTIONS.index(name) if name in PROJECTIONS else len(PROJECTIONS)
