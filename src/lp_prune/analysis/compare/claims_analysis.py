"""The claims read from `lp-prune analyze`'s analysis.json: C2 (highest SNR on the target language),
C5 (target-language calibration lowers the language-specific error only) and C6 (pruning shifts the
activation probabilities of low-probability language-specific neurons).

Rows and repeats as in targets.py: the analysed runs of a setting, one row per recipe, distinct
calibration draws as repeats; the floor of a number on an evaluation language is its repeat spread
pooled over the single-language rows (verdicts.py), and decisions are t-tests at its df (stats.py).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from lp_prune.analysis.compare.stats import ALPHA, BETTER, EQUIVALENT, WORSE, holm, is_finite, mean_estimate
from lp_prune.analysis.compare.targets import AnalysedRun, row_values, target_floor, target_rows
from lp_prune.analysis.compare.verdicts import (
    GENERALLY,
    INCONCLUSIVE,
    NO_DATA,
    NOT_SUPPORTED,
    SUPPORTED,
    Finding,
    LanguageCell,
    decide_languages,
    versus_each,
    versus_mean,
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


C5_MARGIN = 0.005  # relative error: agnostic errors closer than this are "similar" (compare's --c5_margin)


def _mean_curve(curve: list[Any] | None) -> float | None:
    """A per-layer curve's mean; None when absent, NaN (diverged) when a layer's value is not finite."""
    if not curve:
        return None
    return statistics.fmean(curve) if all(is_finite(v) for v in curve) else math.nan


def c2_highest_snr(analysis: AnalysisResult, runs: Sequence[AnalysedRun]) -> Finding:
    """Per target language L: own row's cumulative SNR on L, mean over the layers the study plots (all of
    them), against every other single-language row; the last layer's margin is shown beside."""
    targets = target_rows(runs)

    def snr(lang: str, layers: slice = slice(None)):
        def value(run: AnalysedRun) -> float | None:
            curve = analysis.snr_db.get(run.key, {}).get(lang) or []
            return _mean_curve(curve[layers])

        return value

    cells: dict[str, LanguageCell] = {}
    lines = []
    for lang in targets.rows:
        cell, floor = _versus_each(targets, lang, snr(lang), higher_is_better=True)
        if cell is None:
            continue
        cells[lang] = cell
        last, _ = _versus_each(targets, lang, snr(lang, slice(-1, None)), higher_is_better=True)
        beside = f"; last layer {last.estimate.text(unit=' dB', digits=2)}" if last else ""
        lines.append(f"{lang} vs {cell.versus} {cell.estimate.text(unit=' dB', digits=2)}, {floor}{beside}")
    if not cells:
        reason = NO_ANALYSIS if not analysis.snr_db else "Needs two or more analysed calibration languages."
        return Finding("C2", NO_DATA, reason)
    verdict, decision = decide_languages(cells, GENERALLY)
    evidence = (
        "Own-language calibration's cumulative SNR on that language (mean over layers) against its closest "
        f"competitor (each competitor tested): {'; '.join(lines)}. Decision: {decision}."
    )
    details = {"languages": {lang: cell.to_dict() for lang, cell in cells.items()}}
    return Finding("C2", verdict, f"{evidence} {targets.note()}".strip(), details)


def _versus_each(targets, lang, value, higher_is_better) -> tuple[LanguageCell | None, str]:
    rows = {row: row_values(r, value) for row, r in targets.rows.items()}
    own, own_diverged = rows[lang]
    others = {row: v for row, (v, d) in rows.items() if row != lang and (v or d)}
    if not (own or own_diverged) or not others:
        return None, ""
    floor = target_floor(targets, value)
    diverged = {row: d for row, (_, d) in rows.items()}
    return versus_each(lang, own, others, floor, higher_is_better, diverged), floor.text(" dB")


def _lsar_part(analysis: AnalysisResult, lang: str, part: str):
    def value(run: AnalysedRun) -> float | None:
        curve = analysis.lsar.get("runs", {}).get(run.key, {}).get("languages", {}).get(lang, {}).get(part)
        return _mean_curve(curve)

    return value


def c5_specific_only(analysis: AnalysisResult, runs: Sequence[AnalysedRun], margin: float = C5_MARGIN) -> Finding:
    """Per evaluation language L, the relative error of the language-specific and of the language-agnostic
    part (mean over layers), own-language calibration against the mean of the other single-language rows.

    Two halves: (1) "lowers the language-specific error": generally (more than half the languages, Holm);
    (2) "the agnostic error is similar whatever the calibration language": an equivalence test (two
    one-sided t-tests at ALPHA) within +-margin in every language (intersection-union: no correction),
    refuted when some language's difference beyond the margin is shown (Holm over the languages).
    Supported when both hold; not supported when either is refuted; otherwise inconclusive."""
    targets = target_rows(runs)
    specific: dict[str, LanguageCell] = {}
    agnostic: dict[str, LanguageCell] = {}
    for lang in targets.rows:
        cells = {
            part: _versus_mean(targets, lang, _lsar_part(analysis, lang, part)) for part in ("specific", "agnostic")
        }
        if cells["specific"] and cells["agnostic"]:
            specific[lang], agnostic[lang] = cells["specific"], cells["agnostic"]
    if not specific:
        reason = NO_ANALYSIS if not analysis.lsar.get("runs") else "Needs two or more analysed calibration languages."
        return Finding("C5", NO_DATA, reason)
    specific_verdict, specific_decision = decide_languages(specific, GENERALLY)
    similar = {lang: cell.estimate.equivalence(margin) for lang, cell in agnostic.items()}
    different = holm([_p_beyond(cell, margin) for cell in agnostic.values()])
    if all(state == EQUIVALENT for state in similar.values()):
        agnostic_verdict = SUPPORTED
    elif any(different):
        agnostic_verdict = NOT_SUPPORTED
    else:
        agnostic_verdict = INCONCLUSIVE
    verdicts = (specific_verdict, agnostic_verdict)
    verdict = (
        SUPPORTED
        if all(v == SUPPORTED for v in verdicts)
        else NOT_SUPPORTED
        if NOT_SUPPORTED in verdicts
        else INCONCLUSIVE
    )
    cells = "; ".join(
        f"{lang}: specific {specific[lang].estimate.text(digits=4)}, agnostic {agnostic[lang].estimate.text(digits=4)} "
        f"-> {similar[lang]}"
        + (
            f" (could confirm +-{agnostic[lang].estimate.confirmable_margin():.4f})"
            if similar[lang] != EQUIVALENT
            else ""
        )
        for lang in specific
    )
    hurts = _agnostic_minus_specific(analysis, runs)
    evidence = (
        "Relative error, own-language calibration against the other languages' mean (positive: own lower; mean "
        f"over layers), per evaluation language: {cells}. Language-specific part lowered: {specific_decision}. "
        f"Agnostic part similar within +-{margin:g} (two one-sided t-tests at {ALPHA:g} in every language; a "
        f"difference beyond it is Holm-corrected over the languages): {agnostic_verdict}. {hurts['text']}"
    )
    details = {
        "margin": margin,
        "languages": {
            lang: {
                "specific": specific[lang].to_dict(),
                "agnostic": {**agnostic[lang].to_dict(), "similar": similar[lang]},
            }
            for lang in specific
        },
        "agnostic_minus_specific": hurts,
    }
    return Finding("C5", verdict, f"{evidence} {targets.note()}".strip(), details)


def _versus_mean(targets, lang, value) -> LanguageCell | None:
    rows = {row: row_values(r, value) for row, r in targets.rows.items()}
    own = rows[lang][0]
    others = [v for row, (v, _) in rows.items() if row != lang and v]
    if not own or not others:
        return None
    cell = versus_mean(lang, own, others, target_floor(targets, value), higher_is_better=False)
    cell.notes += [f"{row} diverged ({', '.join(d)})" for row, (_, d) in rows.items() if d]
    return cell


def _p_beyond(cell: LanguageCell, margin: float) -> float:
    """p of |difference| > margin (the one-sided test in the direction the effect points)."""
    e = cell.estimate
    if not e.judged:
        return 1.0
    return e.p_greater(margin) if e.effect > 0 else e.p_less(-margin)


def _agnostic_minus_specific(analysis: AnalysisResult, runs: Sequence[AnalysedRun]) -> dict[str, Any]:
    """Does pruning hurt the agnostic part more? Per run, agnostic minus specific relative error
    (mean over evaluation languages and layers); its mean over runs, t at df runs - 1."""
    differences = []
    for run in runs:
        per_language = analysis.lsar.get("runs", {}).get(run.key, {}).get("languages", {})
        pairs = [
            (_lsar_part(analysis, lang, "agnostic")(run), _lsar_part(analysis, lang, "specific")(run))
            for lang in per_language
        ]
        pairs = [(a, s) for a, s in pairs if is_finite(a) and is_finite(s)]
        if pairs:
            differences.append(statistics.fmean(a - s for a, s in pairs))
    if len(differences) < 2:
        return {"mean": math.nan, "se": math.nan, "outcome": "no floor", "text": ""}
    e = mean_estimate(differences)
    outcome = {BETTER: "more", WORSE: "less"}.get(e.direction(), "within noise")
    text = f"Agnostic minus specific relative error over {len(differences)} runs: {e.text()} ({outcome})."
    return {"mean": e.effect, "se": e.se, "df": e.df, "outcome": outcome, "text": text}


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
    e = mean_estimate(excess)
    direction = e.direction()
    if not e.judged:
        verdict, decision = INCONCLUSIVE, "one run: no spread to judge against"
    elif direction == BETTER:
        verdict, decision = SUPPORTED, f"above all neurons (two-sided t at {ALPHA:g}, df {e.df:g})"
    elif direction == WORSE:
        verdict, decision = NOT_SUPPORTED, f"below all neurons (two-sided t at {ALPHA:g}, df {e.df:g})"
    else:
        verdict = INCONCLUSIVE
        decision = f"within noise; detects {e.detectable():.4f} or more at 80% power"
    mean, se = e.effect, e.se
    warnings = list(analysis.lape.get("warnings") or [])
    if warnings and verdict == SUPPORTED:
        verdict, decision = INCONCLUSIVE, decision + ", but the lowest bin is not low-probability"
    evidence = (
        f"Lowest third of dense p (p in [{lowest[0]['low']:.3f}, {lowest[0]['high']:.3f}]): language-specific "
        f"neurons' mean |p' - p| minus that of all neurons in that range, over {len(excess)} runs: "
        f"{e.text(digits=4)} ({decision})."
    )
    if warnings:
        evidence += "".join(f" {w[:1].upper()}{w[1:]}." for w in warnings)
    return Finding("C6", verdict, evidence, {"excess": excess, "mean": mean, "se": se})
