"""The claims read from `lp-prune analyze`'s analysis.json: C2 (highest SNR on the target language),
C5 (target-language calibration lowers the language-specific error only) and C6 (pruning shifts the
activation probabilities of low-probability language-specific neurons).

Rows and repeats as in targets.py: the analysed runs of a setting, one row per recipe, seeds as
repeats; the floor is the pooled repeat spread of the number the claim reads.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from lp_prune.analysis.compare.differences import Z, is_finite
from lp_prune.analysis.compare.targets import AnalysedRun, floor_over_recipes, target_rows, values_of
from lp_prune.analysis.compare.verdicts import (
    INCONCLUSIVE,
    NO_DATA,
    NO_FLOOR,
    NOT_SUPPORTED,
    SUPPORTED,
    Contrast,
    Finding,
    combine,
    contrast,
)
from lp_prune.analysis.result import AnalysisResult

NO_ANALYSIS = "Needs `lp-prune analyze` of these runs (analysis.json in the runs' folder, or --analysis PATH)."


def analysed_runs(analysis: AnalysisResult, compared: Sequence[Any] = ()) -> dict[str, list[AnalysedRun]]:
    """The analysed runs of analysis.json per setting. A run that is also among `compared` (compare's
    runs, matched by run key) takes compare's setting and row, so both read one set of labels."""
    by_key = {run.path.name: run for run in compared}
    out: dict[str, list[AnalysedRun]] = defaultdict(list)
    for entry in analysis.runs:
        analysed = bool(entry.get("analysed", True))
        known = by_key.get(entry["key"])
        run = AnalysedRun.from_run(known, analysed) if known else AnalysedRun.from_entry(entry)
        if run.analysed:
            out[run.setting].append(run)
    return dict(out)


def c2_highest_snr(analysis: AnalysisResult, runs: Sequence[AnalysedRun]) -> Finding:
    """Per target language L: own row's last-layer cumulative SNR on L against the best other row."""
    targets = target_rows(runs)

    def last_layer(lang: str):
        def value(run: AnalysedRun) -> float | None:
            curve = analysis.snr_db.get(run.key, {}).get(lang) or []
            return curve[-1] if curve and is_finite(curve[-1]) else None

        return value

    per_language = {}
    for lang in targets.rows:
        value = last_layer(lang)
        own = values_of(targets.rows[lang], value)
        others = {o: values_of(r, value) for o, r in targets.rows.items() if o != lang}
        others = {o: v for o, v in others.items() if v}
        if not own or not others:
            continue
        best = max(others, key=lambda o: statistics.fmean(others[o]))
        c = contrast(own, [others[best]], floor_over_recipes(runs, value), higher_is_better=True)
        per_language[lang] = {"best_other": best, "effect": c.effect, "se": c.se, "outcome": c.outcome}
        per_language[lang]["text"] = f"{lang} vs {best} {c.text(' dB', 2)}"
    if not per_language:
        reason = NO_ANALYSIS if not analysis.snr_db else "Needs two or more analysed calibration languages."
        return Finding("C2", NO_DATA, reason)
    outcomes = [v["outcome"] for v in per_language.values()]
    evidence = (
        "Own-language calibration's last-layer SNR margin over the best other language, on that language "
        f"(Z = {Z:g}): {'; '.join(v['text'] for v in per_language.values())}."
    )
    if NO_FLOOR in outcomes:
        evidence += " No repeats (calibration seeds) of any recipe, so no noise floor: at most inconclusive."
    return Finding("C2", combine(outcomes), f"{evidence} {targets.note()}".strip(), {"languages": per_language})


def _lsar_part(analysis: AnalysisResult, lang: str, part: str):
    def value(run: AnalysedRun) -> float | None:
        curve = analysis.lsar.get("runs", {}).get(run.key, {}).get("languages", {}).get(lang, {}).get(part) or []
        finite = [v for v in curve if is_finite(v)]
        return statistics.fmean(finite) if finite else None

    return value


def _c5_outcome(specific: Contrast, agnostic: Contrast) -> str:
    if NO_FLOOR in (specific.outcome, agnostic.outcome):
        return NO_FLOOR
    if agnostic.outcome != "within noise" or specific.outcome == "worse":
        return "worse"  # the agnostic error depends on the calibration, or own calibration raises the specific one
    return "better" if specific.outcome == "better" else "within noise"


def c5_specific_only(analysis: AnalysisResult, runs: Sequence[AnalysedRun]) -> Finding:
    """Per evaluation language L: the relative error of the language-specific and the language-agnostic
    part (mean over layers) when calibrating on L against the mean of the other target rows."""
    targets = target_rows(runs)
    per_language: dict[str, dict[str, Any]] = {}
    for lang in targets.rows:
        parts = {}
        for part in ("specific", "agnostic"):
            value = _lsar_part(analysis, lang, part)
            own = values_of(targets.rows[lang], value)
            others = [v for o, r in targets.rows.items() if o != lang and (v := values_of(r, value))]
            if own and others:
                parts[part] = contrast(own, others, floor_over_recipes(runs, value), higher_is_better=False)
        if len(parts) == 2:
            outcome = _c5_outcome(parts["specific"], parts["agnostic"])
            per_language[lang] = {
                "specific": {"effect": parts["specific"].effect, "se": parts["specific"].se},
                "agnostic": {"effect": parts["agnostic"].effect, "se": parts["agnostic"].se},
                "outcome": outcome,
                "text": f"{lang}: specific {parts['specific'].text(digits=4)}, "
                f"agnostic {parts['agnostic'].text(digits=4)}",
            }
    if not per_language:
        reason = NO_ANALYSIS if not analysis.lsar.get("runs") else "Needs two or more analysed calibration languages."
        return Finding("C5", NO_DATA, reason)
    outcomes = [v["outcome"] for v in per_language.values()]
    hurts = _agnostic_minus_specific(analysis, runs)
    cells = "; ".join(v["text"] for v in per_language.values())
    evidence = (
        "Error reduction from own-language calibration against the other languages (relative error, mean over "
        f"layers; positive: own lower), per evaluation language: {cells}. {hurts['text']}"
    )
    if NO_FLOOR in outcomes:
        evidence += " No repeats (calibration seeds) of any recipe, so no noise floor: at most inconclusive."
    details = {"languages": per_language, "agnostic_minus_specific": hurts}
    return Finding("C5", combine(outcomes), f"{evidence} {targets.note()}".strip(), details)


def _agnostic_minus_specific(analysis: AnalysisResult, runs: Sequence[AnalysedRun]) -> dict[str, Any]:
    """Does pruning hurt the agnostic part more? Per run, agnostic minus specific relative error
    (mean over evaluation languages and layers); its mean over runs against its stderr over runs."""
    differences = []
    for run in runs:
        per_language = analysis.lsar.get("runs", {}).get(run.key, {}).get("languages", {})
        pairs = [
            (_lsar_part(analysis, lang, "agnostic")(run), _lsar_part(analysis, lang, "specific")(run))
            for lang in per_language
        ]
        pairs = [(a, s) for a, s in pairs if a is not None and s is not None]
        if pairs:
            differences.append(statistics.fmean(a - s for a, s in pairs))
    if len(differences) < 2:
        return {"mean": math.nan, "se": math.nan, "outcome": NO_FLOOR, "text": ""}
    mean, se = statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(len(differences))
    outcome = "more" if mean > Z * se else "less" if mean < -Z * se else "within noise"
    text = (
        f"Pruning hurts the agnostic part {outcome} than the specific part "
        f"(agnostic minus specific relative error over {len(differences)} runs: {mean:+.3f} ± {se:.3f})."
    )
    if outcome == "within noise":
        text = f"Agnostic minus specific relative error over {len(differences)} runs: {mean:+.3f} ± {se:.3f}"
        text += " (within noise)."
    return {"mean": mean, "se": se, "outcome": outcome, "text": text}


def c6_low_probability_shifts(analysis: AnalysisResult, runs: Sequence[AnalysedRun]) -> Finding:
    """Per analysed run, the lowest dense-p bin: the language-specific neurons' mean |p' - p| minus that
    of all neurons with p in the bin; its mean over runs against its stderr over runs."""
    lape_runs = analysis.lape.get("runs", {})
    lowest = [lape_runs[run.key]["bins"][0] for run in runs if lape_runs.get(run.key, {}).get("bins")]
    lowest = [
        b for b in lowest if is_finite(b.get("mean_abs_shift")) and is_finite(b.get("all_neurons_mean_abs_shift"))
    ]
    if not lowest:
        return Finding("C6", NO_DATA, NO_ANALYSIS)
    excess = [b["mean_abs_shift"] - b["all_neurons_mean_abs_shift"] for b in lowest]
    mean = statistics.fmean(excess)
    se = statistics.stdev(excess) / math.sqrt(len(excess)) if len(excess) >= 2 else math.nan
    if not is_finite(se):
        verdict, decision = INCONCLUSIVE, "one run: no spread to judge against"
    elif mean > Z * se:
        verdict, decision = SUPPORTED, "above all neurons beyond noise"
    elif mean < -Z * se:
        verdict, decision = NOT_SUPPORTED, "below all neurons beyond noise"
    else:
        verdict, decision = INCONCLUSIVE, "within noise"
    warnings = list(analysis.lape.get("warnings") or [])
    if warnings and verdict == SUPPORTED:
        verdict, decision = INCONCLUSIVE, decision + ", but the lowest bin is not low-probability"
    evidence = (
        f"Lowest third of dense p (p in [{lowest[0]['low']:.3f}, {lowest[0]['high']:.3f}]): language-specific "
        f"neurons' mean |p' - p| minus that of all neurons in that range, over {len(excess)} runs: "
        f"{mean:+.4f}" + (f" ± {se:.4f}" if is_finite(se) else "") + f" ({decision})."
    )
    if warnings:
        evidence += "".join(f" {w[:1].upper()}{w[1:]}." for w in warnings)
    return Finding("C6", verdict, evidence, {"excess": excess, "mean": mean, "se": se})
