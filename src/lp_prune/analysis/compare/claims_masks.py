"""C4: o_proj and down_proj have the least consistent masks across calibration languages, especially
in early layers, while q/k/v of the first layer stay consistent.

Consistency is judged against the same-language floor (the mask IoU of two calibration draws of one
language): the gap floor - cross-language IoU, per projection and layer. Layers are the repeated
measurements: a projection's gap is its mean over layers with the stderr of that mean. Three parts:

1. ranking: the two projections with the largest mean gap are o_proj and down_proj, and the second of
   them exceeds the third projection by more than Z paired (layer by layer) stderrs;
2. early: for o_proj and down_proj, the gap in the first third of the layers exceeds the later one by
   more than Z stderrs (Welch);
3. first layer: at layer 0, q, k and v's mean gap lies below the other projections' mean gap by more
   than Z times the SD of that difference over the other layers.

All three: supported. The ranking decided against the study (another projection decidedly among the
two least consistent), or part 2 or 3 decided against it: not supported. Otherwise inconclusive.
Without a floor the IoUs cannot be judged: inconclusive.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from lp_prune.analysis.compare.differences import Z
from lp_prune.analysis.compare.verdicts import INCONCLUSIVE, NO_DATA, NOT_SUPPORTED, SUPPORTED, Finding

STUDY_LEAST_CONSISTENT = ("o_proj", "down_proj")
FIRST_LAYER_CONSISTENT = ("q_proj", "k_proj", "v_proj")


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 2:
        return statistics.fmean(values), math.nan
    return statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))


def _separated(a: Sequence[float], b: Sequence[float]) -> str:
    """'above' / 'below' / 'within noise': mean of a - b (paired over layers) against Z stderrs."""
    mean, se = _mean_se([x - y for x, y in zip(a, b, strict=True)])
    if not math.isfinite(se):
        return "within noise"
    return "above" if mean > Z * se else "below" if mean < -Z * se else "within noise"


def _early_vs_later(gaps: Sequence[float], early: int) -> tuple[float, float, str]:
    first, rest = list(gaps[:early]), list(gaps[early:])
    if not rest:
        return math.nan, math.nan, "within noise"
    (m1, s1), (m2, s2) = _mean_se(first), _mean_se(rest)
    se = math.sqrt((s1 if math.isfinite(s1) else 0) ** 2 + (s2 if math.isfinite(s2) else 0) ** 2)
    if se == 0 or not (math.isfinite(s1) or math.isfinite(s2)):
        return m1, m2, "within noise"
    return m1, m2, "above" if m1 - m2 > Z * se else "below" if m1 - m2 < -Z * se else "within noise"


def c4_least_consistent_masks(iou: Mapping[str, Any]) -> Finding:
    """iou: compare's iou table of one setting (projection_layer, floor_projection_layer, chance)."""
    cross = iou.get("projection_layer") or {}
    floor = iou.get("floor_projection_layer") or {}
    if not cross:
        return Finding("C4", NO_DATA, "Needs masks of two or more calibration languages.")
    if not floor:
        means = ", ".join(f"{p} {statistics.fmean(v):.3f}" for p, v in sorted(cross.items(), key=lambda i: sum(i[1])))
        evidence = (
            f"Cross-language IoU (mean over layers, lowest first): {means}; chance {iou.get('chance', math.nan):.3f}. "
            "No same-language floor (no two runs of one language with different seeds), so these IoUs cannot "
            "be judged: an IoU of 0.8 may be all that two calibration sets of one language reach."
        )
        return Finding("C4", INCONCLUSIVE, evidence, {"cross": {p: statistics.fmean(v) for p, v in cross.items()}})
    gaps = {p: [f - c for f, c in zip(floor[p], cross[p], strict=True)] for p in cross if p in floor}
    ranked = sorted(gaps, key=lambda p: statistics.fmean(gaps[p]), reverse=True)
    n_layers = len(next(iter(gaps.values())))
    early = max(1, n_layers // 3)
    per_projection = {}
    for p in ranked:
        mean, se = _mean_se(gaps[p])
        first, rest, early_outcome = _early_vs_later(gaps[p], early)
        per_projection[p] = {
            "cross": statistics.fmean(cross[p]),
            "floor": statistics.fmean(floor[p]),
            "gap": mean,
            "gap_se": se,
            "gap_early": first,
            "gap_rest": rest,
            "early_outcome": early_outcome,
            "gap_layer0": gaps[p][0],
        }
    parts = _parts(gaps, ranked, per_projection)
    verdict = _verdict(parts)
    cells = ", ".join(f"{p} {v['floor']:.3f} - {v['cross']:.3f} = {v['gap']:+.3f}" for p, v in per_projection.items())
    evidence = (
        f"Same-language floor minus cross-language IoU (mean over layers, largest gap first): {cells}. "
        f"Ranking: {parts['ranking_text']}. Early (first {early} layers vs later): {parts['early_text']}. "
        f"First layer: {parts['first_layer_text']}."
    )
    details = {"projections": per_projection, "early_layers": early, "parts": parts}
    return Finding("C4", verdict, evidence, details)


def _parts(gaps: dict[str, list[float]], ranked: list[str], per_projection: dict[str, Any]) -> dict[str, Any]:
    top, rest = ranked[:2], ranked[2:]
    study = [p for p in STUDY_LEAST_CONSISTENT if p in gaps]
    separated = _separated(gaps[top[-1]], gaps[rest[0]]) if rest and len(top) == 2 else "within noise"
    if set(top) == set(study) and separated == "above":
        ranking = "holds"
    elif separated == "above":  # two other projections are decidedly less consistent than one of the study's
        ranking = "fails"
    else:
        ranking = "undecided"
    early = {p: per_projection[p]["early_outcome"] for p in study}
    early_part = (
        "holds" if all(o == "above" for o in early.values()) else "fails" if "below" in early.values() else "undecided"
    )
    first_layer, first_text = _first_layer(gaps)
    return {
        "ranking": ranking,
        "ranking_text": f"least consistent {', '.join(top)} (second vs third: {separated}) -> {ranking}",
        "early": early_part,
        "early_text": ", ".join(
            f"{p} {per_projection[p]['gap_early']:+.3f} vs {per_projection[p]['gap_rest']:+.3f} ({early[p]})"
            for p in study
        )
        + f" -> {early_part}",
        "first_layer": first_layer,
        "first_layer_text": first_text,
    }


def _first_layer(gaps: dict[str, list[float]]) -> tuple[str, str]:
    """q/k/v's mean gap minus the other projections' mean gap, at layer 0, against how much that
    difference moves from layer to layer elsewhere (its SD over the other layers)."""
    qkv = [p for p in FIRST_LAYER_CONSISTENT if p in gaps]
    rest = [p for p in gaps if p not in FIRST_LAYER_CONSISTENT]
    if not qkv or not rest:
        return "undecided", "needs q/k/v and other projections"
    n_layers = len(next(iter(gaps.values())))
    difference = [
        statistics.fmean(gaps[p][i] for p in qkv) - statistics.fmean(gaps[p][i] for p in rest) for i in range(n_layers)
    ]
    spread = statistics.stdev(difference[1:]) if n_layers > 2 else math.nan
    first = difference[0]
    if not math.isfinite(spread) or spread == 0:
        state = "undecided"
    else:
        state = "holds" if first < -Z * spread else "fails" if first > Z * spread else "undecided"
    text = (
        f"q/k/v minus the other projections' gap at layer 0 {first:+.3f} (SD of that difference over "
        f"the other layers {spread:.3f}) -> {state}"
    )
    return state, text


def _verdict(parts: Mapping[str, Any]) -> str:
    states = [parts["ranking"], parts["early"], parts["first_layer"]]
    if all(s == "holds" for s in states):
        return SUPPORTED
    if "fails" in states:
        return NOT_SUPPORTED
    return INCONCLUSIVE
