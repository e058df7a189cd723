"""C4: o_proj and down_proj have the least consistent masks across calibration languages, especially
in early layers, while q/k/v of the first layer stay consistent.

Judged on the study's measure: the cross-language mask IoU per projection and layer (mean over the
language pairs; compare's iou table of one setting). Layers are the repeated measurements: an effect
is a mean over layers with its Student-t interval, and every decision is taken at ALPHA (0.05).
Neighbouring layers are not independent draws, so these intervals lean narrow rather than wide.

1. Ranking. Projections are ranked by cross-language IoU, mean over layers. o_proj and down_proj are
   each compared with every other projection: the paired difference (other - study) over layers, t
   with df = layers - 1. Holds: every one of these differences is above zero at one-sided ALPHA. The
   claim needs all of them at once (an intersection-union test), so testing each at ALPHA keeps the
   level at ALPHA and no correction is needed. Fails: o_proj or down_proj is more consistent than
   some other projection (a difference below zero, one-sided, Holm over the whole family at ALPHA).
   Otherwise undecided.
2. Early layers. For o_proj and down_proj: the mean IoU of the later layers minus that of the first
   third (Welch's t, Welch-Satterthwaite df). Holds when both are above zero at one-sided ALPHA
   (intersection-union); fails when either is below zero (Holm over the two); else undecided.
3. First layer. At layer 0: the mean IoU of q/k/v minus the mean IoU of the other projections, the
   projections of each group as its values (Welch's t). Holds above zero at one-sided ALPHA, fails
   below, else undecided (a single test).
   Where a group has a single value (the early third of a three-layer model, a first layer with only
   q_proj), Welch is undefined: the other group's variance stands for both (pooled t, its df).

The same-language floor (the IoU of two calibration draws of one language) is the check against draw
noise, reported beside the ranking and never deciding it: floor - cross for o_proj and down_proj,
paired over layers (t, df = layers - 1). It passes when both cross-language IoUs lie below their floor
at one-sided ALPHA (intersection-union): then their low IoU comes from the calibration language, not
only from which texts were drawn.

Verdict: any part fails -> not supported (the study's own measure disagrees with it). All three parts
hold and the draw-noise check passes -> supported. Otherwise inconclusive. Without a floor, or with a
floor that o_proj's or down_proj's cross IoU is not shown below, the parts are still judged (and can
still disagree), but a low cross-language IoU may be no more than two draws of one language give:
"least consistent across calibration languages" is then not shown, and the claim is at most
inconclusive (DESIGN: a claim with no repeats to judge against is never supported).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lp_prune.analysis.compare.stats import ALPHA, Estimate, holm, is_finite, mean_estimate
from lp_prune.analysis.compare.verdicts import INCONCLUSIVE, NO_DATA, NOT_SUPPORTED, SUPPORTED, Finding

STUDY_LEAST_CONSISTENT = ("o_proj", "down_proj")
FIRST_LAYER_CONSISTENT = ("q_proj", "k_proj", "v_proj")
HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"
PASSES, NOT_PASSED, NOT_CHECKED = "passes", "not passed", "not checked"


@dataclass
class Part:
    """One part of the claim: its state and the sentence that says why."""

    state: str
    text: str
    details: dict[str, Any] = field(default_factory=dict)


def paired(high: Sequence[float], low: Sequence[float]) -> Estimate:
    """Mean over layers of high - low, with its stderr (t, df = layers - 1)."""
    return mean_estimate([a - b for a, b in zip(high, low, strict=True)])


def two_sample(high: Sequence[float], low: Sequence[float]) -> Estimate:
    """mean(high) - mean(low): Welch's t with the Welch-Satterthwaite df; where one group has a single
    value, the other group's variance stands for both (pooled t with that group's df)."""
    n1, n2 = len(high), len(low)
    if n1 == 0 or n2 == 0:
        return Estimate(math.nan, math.nan, 0)
    effect = statistics.fmean(high) - statistics.fmean(low)
    if n1 < 2 and n2 < 2:
        return Estimate(effect, math.nan, 0)
    if n1 < 2 or n2 < 2:
        var, df = statistics.variance(high if n1 >= 2 else low), max(n1, n2) - 1
        return Estimate(effect, math.sqrt(var * (1 / n1 + 1 / n2)), df)
    v1, v2 = statistics.variance(high) / n1, statistics.variance(low) / n2
    if v1 + v2 == 0:
        return Estimate(effect, 0.0, 0)
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    return Estimate(effect, math.sqrt(v1 + v2), df)


def all_above(estimates: Mapping[str, Estimate], what: str) -> Part:
    """Holds when every estimate is above zero at one-sided ALPHA (intersection-union: no correction);
    fails when any is below zero, one-sided, Holm over all of them; else undecided."""
    names = list(estimates)
    if not names or not all(e.judged for e in estimates.values()):
        unjudged = [n for n in names if not estimates[n].judged] or ["nothing to compare"]
        return Part(UNDECIDED, f"{what}: no noise to judge {', '.join(unjudged)} against -> {UNDECIDED}")
    above = {n: estimates[n].p_greater() for n in names}
    below = dict(zip(names, holm([estimates[n].p_less() for n in names]), strict=True))
    if all(p < ALPHA for p in above.values()):
        state = HOLDS
    elif any(below.values()):
        state = FAILS
    else:
        state = UNDECIDED
    rule = _rule(len(names))
    shown = [n for n in names if below[n]] if state == FAILS else [min(names, key=lambda n: estimates[n].t)]
    label = "below zero" if state == FAILS else "weakest"
    cells = "; ".join(f"{n} {estimates[n].text()}" for n in shown)
    details = {
        n: {**asdict(estimates[n]), "p_above": above[n], "below_holm": below[n], "interval": estimates[n].interval()}
        for n in names
    }
    return Part(state, f"{what}, {rule}; {label}: {cells} -> {state}", details)


def _rule(count: int) -> str:
    if count == 1:
        return f"holds / fails: above / below zero at one-sided {ALPHA:g}"
    return (
        f"holds: each above zero at one-sided {ALPHA:g} (intersection-union: all {count} must hold, so no "
        f"correction); fails: any below zero, one-sided, Holm over the {count}"
    )


def c4_least_consistent_masks(iou: Mapping[str, Any]) -> Finding:
    """iou: compare's iou table of one setting (projection_layer, floor_projection_layer, chance)."""
    cross = {p: list(v) for p, v in (iou.get("projection_layer") or {}).items() if v}
    floor = {p: list(v) for p, v in (iou.get("floor_projection_layer") or {}).items() if v}
    if not cross:
        return Finding("C4", NO_DATA, "Needs masks of two or more calibration languages.")
    ranked = sorted(cross, key=lambda p: statistics.fmean(cross[p]))
    early = max(1, min(len(v) for v in cross.values()) // 3)
    parts = {"ranking": _ranking(cross, ranked), "early": _early(cross, early), "first_layer": _first_layer(cross)}
    check = _floor_check(cross, floor)
    states = [part.state for part in parts.values()]
    if FAILS in states:
        verdict = NOT_SUPPORTED
    elif all(s == HOLDS for s in states) and check.state == PASSES:
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    means = ", ".join(f"{p} {statistics.fmean(cross[p]):.3f}" for p in ranked)
    evidence = (
        f"Cross-language IoU (mean over layers, lowest first): {means}; chance {iou.get('chance', math.nan):.3f}; "
        "effects with 95% intervals. "
        f"Ranking: {parts['ranking'].text}. Early (first {early} layers vs later): {parts['early'].text}. "
        f"First layer: {parts['first_layer'].text}. Draw noise: {check.text}."
    )
    evidence += " " + _conclusion(parts, check)
    projections = {
        p: {
            "cross": statistics.fmean(cross[p]),
            "floor": statistics.fmean(floor[p]) if _aligned(floor.get(p), cross[p]) else math.nan,
            "cross_layer0": cross[p][0],
        }
        for p in ranked
    }
    details = {
        "projections": projections,
        "early_layers": early,
        "parts": {name: part.state for name, part in parts.items()} | {"floor_check": check.state},
        "tests": {name: part.details for name, part in parts.items()} | {"floor_check": check.details},
        "alpha": ALPHA,
    }
    return Finding("C4", verdict, evidence, details)


def _conclusion(parts: Mapping[str, Part], check: Part) -> str:
    failing = [name.replace("_", " ") for name, part in parts.items() if part.state == FAILS]
    undecided = [name.replace("_", " ") for name, part in parts.items() if part.state == UNDECIDED]
    if failing:
        return f"The study's own measure disagrees ({', '.join(failing)})."
    if undecided:
        return f"Within noise: {', '.join(undecided)}."
    if check.state != PASSES:
        return "The study's measure agrees, but draw noise is not excluded: at most inconclusive."
    return "The study's measure agrees, beyond draw noise."


def _ranking(cross: Mapping[str, list[float]], ranked: list[str]) -> Part:
    study = [p for p in STUDY_LEAST_CONSISTENT if p in cross]
    others = [p for p in ranked if p not in STUDY_LEAST_CONSISTENT]
    if len(study) < len(STUDY_LEAST_CONSISTENT) or not others:
        has = ", ".join(ranked)
        return Part(UNDECIDED, f"needs o_proj, down_proj and other projections (has {has}) -> {UNDECIDED}")
    layers = min(len(cross[p]) for p in ranked)
    estimates = {f"{o} - {s}": paired(cross[o][:layers], cross[s][:layers]) for s in study for o in others}
    what = f"other projection minus o_proj / down_proj, paired over {layers} layers (t, df {layers - 1})"
    return all_above(estimates, what)


def _early(cross: Mapping[str, list[float]], early: int) -> Part:
    study = [p for p in STUDY_LEAST_CONSISTENT if p in cross]
    if not study:
        return Part(UNDECIDED, f"needs o_proj or down_proj -> {UNDECIDED}")
    estimates = {p: two_sample(cross[p][early:], cross[p][:early]) for p in study}
    means = ", ".join(
        f"{p} {statistics.fmean(cross[p][:early]):.3f} vs {statistics.fmean(cross[p][early:]):.3f}"
        for p in study
        if len(cross[p]) > early
    )
    what = f"{means or 'no later layers'}; later minus early (Welch)"
    return all_above(estimates, what)


def _first_layer(cross: Mapping[str, list[float]]) -> Part:
    qkv = [cross[p][0] for p in FIRST_LAYER_CONSISTENT if p in cross]
    rest = [v[0] for p, v in cross.items() if p not in FIRST_LAYER_CONSISTENT]
    if not qkv or not rest:
        return Part(UNDECIDED, f"needs q/k/v and other projections -> {UNDECIDED}")
    what = (
        f"layer-0 IoU of q/k/v {statistics.fmean(qkv):.3f} vs the other {len(rest)} projections "
        f"{statistics.fmean(rest):.3f}; q/k/v minus the others (Welch over projections)"
    )
    return all_above({"q/k/v - others": two_sample(qkv, rest)}, what)


def _aligned(floor: Sequence[float] | None, cross: Sequence[float]) -> bool:
    return bool(floor) and len(floor) == len(cross) and all(is_finite(v) for v in floor)


def _floor_check(cross: Mapping[str, list[float]], floor: Mapping[str, list[float]]) -> Part:
    """floor - cross for o_proj and down_proj, paired over layers: reported beside the ranking."""
    study = [p for p in STUDY_LEAST_CONSISTENT if p in cross]
    if not floor:
        return Part(
            NOT_CHECKED,
            "No same-language floor (no two runs of one language with different seeds), so draw noise was "
            f"not checked: a low cross-language IoU may be all that two calibration sets of one language reach -> "
            f"{NOT_CHECKED}",
        )
    missing = [p for p in study if not _aligned(floor.get(p), cross[p])]
    if not study or missing:
        return Part(NOT_CHECKED, f"no same-language floor for {', '.join(missing or STUDY_LEAST_CONSISTENT)}")
    estimates = {p: paired(floor[p], cross[p]) for p in study}
    state = {HOLDS: PASSES}.get(all_above(estimates, "").state, NOT_PASSED)
    below = ", of ".join(f"{p} by {estimates[p].text()}" for p in study)
    gaps = ", ".join(
        f"{p} {statistics.fmean(floor[p]) - statistics.fmean(v):+.3f}"
        for p, v in sorted(cross.items(), key=lambda i: statistics.fmean(i[1]))
        if _aligned(floor.get(p), v)
    )
    text = (
        f"the cross-language IoU lies below its same-language floor (paired over layers): of {below}; "
        f"passes when each is above zero at one-sided {ALPHA:g} (intersection-union) -> {state}. "
        f"Floor minus cross, mean over layers: {gaps}"
    )
    details = {p: {**asdict(e), "interval": e.interval(), "p_below_floor": e.p_greater()} for p, e in estimates.items()}
    return Part(state, text, details)
