"""The study's claims, checked on the numbers of saved runs: one verdict record per claim and setting.

Pure functions over what `compare` (lp_prune.analysis.compare.tables.Comparison: its perplexity,
accuracy, per-item and IoU tables) and `analyze` (analysis.json) already produce; nothing is
recomputed. The downstream differences behind C3 are in differences.py, the recipes per target
language in recipes.py.

    C1  target-language calibration gives the lowest perplexity on that language      (compare)
    C2  ... and the highest SNR on that language                                        (analyze)
    C3  ... but does not consistently improve downstream accuracy on it                 (compare)
    C4  o_proj and down_proj have the least consistent masks, especially early layers   (compare)
    C5  the error on language-agnostic features is similar whatever the calibration     (analyze)
    C6  pruning shifts the activation probabilities of low-probability language-specific
        neurons                                                                          (analyze)

Rules (the study gives none; these are the project's):
- C1/C2: the single-language calibration rows only (mixes, generated text and other recipes are
  not a calibration *language*); a language counts when its own row is the best one.
- C3: per task of language L, the paired difference between calibrating on L and the mean of the
  other single languages, item by item on the same items (lm-eval's per-sample scores kept by the
  runs); without per-item scores, the unpaired difference with the stderrs combined. A difference
  beyond Z = 2 stderrs is a gain or a loss; "consistent" means a gain for every task.
- C4: masks are consistent across languages when their IoU reaches the same-language floor (two
  calibration sets of one language drawn with different seeds). The gap floor - cross-language IoU
  ranks the projections; early layers are the first third. Without the floor there is no verdict.
- C5: supported when the agnostic error varies less across calibration languages (coefficient of
  variation, mean over layers) than the language-specific error.
- C6: supported when, in the lowest third of dense activation probability, the language-specific
  neurons' mean |p' - p| exceeds that of all neurons with p in the same range.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lp_prune.analysis.compare.differences import Z, is_finite, target_difference
from lp_prune.analysis.result import AnalysisResult
from lp_prune.config import LANGUAGES

SUPPORTED = "supported"
PARTLY = "partly supported"
NOT_SUPPORTED = "not supported"
NO_DATA = "no data"

STUDY_LEAST_CONSISTENT = ("o_proj", "down_proj")

STATEMENTS = {
    "C1": "Calibrating on the target language gives the lowest perplexity on that language.",
    "C2": "Calibrating on the target language gives the highest SNR on that language.",
    "C3": "Target-language calibration does not consistently improve downstream accuracy on that language.",
    "C4": "o_proj and down_proj have the least consistent masks across calibration languages, "
    "especially in early layers.",
    "C5": "The pruning error on language-agnostic features is similar whatever the calibration language.",
    "C6": "Pruning shifts the activation probabilities of low-probability language-specific neurons.",
}


@dataclass
class Finding:
    claim: str  # "C1" ... "C6"
    verdict: str  # SUPPORTED, PARTLY, NOT_SUPPORTED or NO_DATA
    evidence: str  # the numbers behind the verdict, in one or two sentences
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def statement(self) -> str:
        return STATEMENTS[self.claim]

    def line(self) -> str:
        return f"{self.claim} {self.statement} Verdict: {self.verdict}. {self.evidence}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "statement": self.statement}


def _share_verdict(hits: int, total: int) -> str:
    if total == 0:
        return NO_DATA
    return SUPPORTED if hits == total else NOT_SUPPORTED if hits == 0 else PARTLY


# --- C1: perplexity ---------------------------------------------------------------------------------


def c1_lowest_perplexity(perplexity: Mapping[str, Mapping[str, float]]) -> Finding:
    """perplexity: compare's matrix {recipe or 'dense': {evaluation language: perplexity}}."""
    rows = {row: values for row, values in perplexity.items() if row in LANGUAGES}
    targets = [lang for lang in rows if lang in rows[lang]]
    if len(rows) < 2 or not targets:
        return Finding("C1", NO_DATA, "Needs runs calibrated on two or more single languages, evaluated on them.")
    per_language = {}
    for lang in targets:
        scored = {row: values[lang] for row, values in rows.items() if is_finite(values.get(lang))}
        best = min(scored, key=scored.__getitem__)
        others = {row: v for row, v in scored.items() if row != lang}
        per_language[lang] = {
            "own": scored[lang],
            "best": best,
            "best_other": min(others, key=others.__getitem__) if others else None,
            "best_other_value": min(others.values()) if others else math.nan,
        }
    hits = [lang for lang, v in per_language.items() if v["best"] == lang]
    misses = [
        f"{lang} (own {v['own']:.2f}, {v['best']} {perplexity[v['best']][lang]:.2f})"
        for lang, v in per_language.items()
        if v["best"] != lang
    ]
    margins = [
        f"{lang} {100 * (v['best_other_value'] / v['own'] - 1):+.1f}%" for lang, v in per_language.items() if v["own"]
    ]
    evidence = f"Lowest on its own language in {len(hits)} of {len(per_language)} ({', '.join(hits) or 'none'})"
    evidence += f"; not in {'; '.join(misses)}." if misses else "."
    evidence += f" Next-best calibration vs own: {', '.join(margins)}."
    return Finding("C1", _share_verdict(len(hits), len(per_language)), evidence, {"languages": per_language})


# --- C3: downstream -----------------------------------------------------------------------------------


def c3_downstream_gains(
    accuracy: Mapping[str, Mapping[str, float]],
    stderr: Mapping[str, Mapping[str, float]],
    items: Mapping[str, Mapping[str, Mapping[Any, float]]],
    task_language: Callable[[str], str | None],
) -> Finding:
    """accuracy / stderr: compare's {row: {task: value}}; items: {row: {task: {item id: score}}}."""
    single = [row for row in accuracy if row in LANGUAGES]
    per_task: dict[str, dict[str, Any]] = {}
    for task in sorted({task for row in single for task in accuracy[row]}):
        lang = task_language(task)
        others = [row for row in single if row != lang and task in accuracy[row]]
        if lang not in single or task not in accuracy[lang] or not others:
            continue
        diff = target_difference(task, lang, others, accuracy, stderr, items)
        if diff is not None:
            per_task[task] = {"language": lang, "own": accuracy[lang][task], "vs": others, **asdict(diff)}
            per_task[task]["outcome"], per_task[task]["text"] = diff.outcome, diff.text()
    if not per_task:
        return Finding(
            "C3", NO_DATA, "Needs downstream results (eval.tasks) of runs calibrated on a task's language and others."
        )
    gains = [task for task, v in per_task.items() if v["outcome"] == "gain"]
    outcomes = [v["outcome"] for v in per_task.values()]
    counts = ", ".join(f"{outcomes.count(o)} {o}" for o in dict.fromkeys(outcomes))
    cells = "; ".join(f"{v['language']} {task}: {v['text']}" for task, v in per_task.items())
    consistent = len(gains) == len(per_task)
    evidence = (
        f"Own-language calibration minus the mean of the other languages, per task: {cells}. "
        f"Consistent gain: {'yes' if consistent else 'no'} ({counts}; Z = {Z:g})."
    )
    verdict = NOT_SUPPORTED if consistent else SUPPORTED
    return Finding("C3", verdict, evidence, {"tasks": per_task, "consistent_gain": consistent})


# --- C4: mask consistency against the same-language floor --------------------------------------------


def c4_least_consistent_masks(iou: Mapping[str, Any]) -> Finding:
    """iou: compare's iou table of one setting (projection_layer, floor_projection_layer, chance)."""
    cross = iou.get("projection_layer") or {}
    floor = iou.get("floor_projection_layer") or {}
    if not cross:
        return Finding("C4", NO_DATA, "Needs masks of two or more calibration languages.")
    cross_means = {proj: statistics.fmean(values) for proj, values in cross.items()}
    ranked_raw = sorted(cross_means, key=cross_means.__getitem__)
    raw = ", ".join(f"{proj} {cross_means[proj]:.3f}" for proj in ranked_raw)
    if not floor:
        evidence = (
            f"Cross-language IoU (mean over layers, lowest first): {raw}; chance {iou.get('chance', math.nan):.3f}. "
            "No same-language floor (no two runs of one language with different seeds), so these IoUs cannot "
            "be judged: an IoU of 0.8 may be all that two calibration sets of one language reach."
        )
        return Finding("C4", NO_DATA, evidence, {"cross": cross_means})
    gaps = {proj: [f - c for f, c in zip(floor[proj], cross[proj], strict=True)] for proj in cross if proj in floor}
    mean_gap = {proj: statistics.fmean(values) for proj, values in gaps.items()}
    ranked = sorted(mean_gap, key=mean_gap.__getitem__, reverse=True)
    n_layers = len(next(iter(gaps.values())))
    early = max(1, n_layers // 3)
    per_projection = {
        proj: {
            "cross": cross_means[proj],
            "floor": statistics.fmean(floor[proj]),
            "gap": mean_gap[proj],
            "gap_early": statistics.fmean(gaps[proj][:early]),
            "gap_rest": statistics.fmean(gaps[proj][early:]) if n_layers > early else math.nan,
            "worst_layers": sorted(range(n_layers), key=lambda i, p=proj: gaps[p][i], reverse=True)[:3],
        }
        for proj in ranked
    }
    least = ranked[:2]
    matches = len(set(least) & set(STUDY_LEAST_CONSISTENT))
    early_heavy = all(per_projection[p]["gap_early"] > per_projection[p]["gap_rest"] for p in least)
    verdict = SUPPORTED if matches == 2 and early_heavy else NOT_SUPPORTED if matches == 0 else PARTLY
    cells = ", ".join(
        f"{proj} {v['floor']:.3f} - {v['cross']:.3f} = {v['gap']:+.3f}" for proj, v in per_projection.items()
    )
    layers = "; ".join(
        f"{proj}: layers {', '.join(map(str, per_projection[proj]['worst_layers']))} "
        f"(gap in the first {early} layers {per_projection[proj]['gap_early']:+.3f}, "
        f"later {per_projection[proj]['gap_rest']:+.3f})"
        for proj in least
    )
    evidence = (
        f"Same-language floor minus cross-language IoU (mean over layers, largest gap first): {cells}. "
        f"Least consistent: {layers}."
    )
    return Finding("C4", verdict, evidence, {"projections": per_projection, "early_layers": early})


# --- C2, C5, C6: from analyze's analysis.json -----------------------------------------------------------


def c2_highest_snr(found: Mapping[str, Any] | None) -> Finding:
    """found: analysis.json's findings[setting] (snr_best_calibration: {lang: {last_layer, mean_over_layers}})."""
    best = (found or {}).get("snr_best_calibration") or {}
    if not best:
        return Finding("C2", NO_DATA, _NO_ANALYSIS)
    hits = [lang for lang, b in best.items() if b["last_layer"] == lang]
    mean_hits = [lang for lang, b in best.items() if b["mean_over_layers"] == lang]
    misses = ", ".join(f"{lang} (best: {b['last_layer']})" for lang, b in best.items() if b["last_layer"] != lang)
    evidence = (
        f"Highest last-layer SNR on its own language in {len(hits)} of {len(best)} ({', '.join(hits) or 'none'})"
        + (f"; not in {misses}" if misses else "")
        + f". Mean over layers: {len(mean_hits)} of {len(best)}."
    )
    return Finding("C2", _share_verdict(len(hits), len(best)), evidence, {"best": dict(best)})


def c5_agnostic_error_similar(found: Mapping[str, Any] | None) -> Finding:
    spread = (found or {}).get("lsar_spread") or {}
    specific, agnostic = spread.get("specific_cv", math.nan), spread.get("agnostic_cv", math.nan)
    if not (is_finite(specific) and is_finite(agnostic)):
        return Finding("C5", NO_DATA, _NO_ANALYSIS if not spread else "Needs two or more analysed calibrations.")
    evidence = (
        f"Spread across calibration languages (coefficient of variation, mean over layers) of the relative "
        f"error: language-agnostic {agnostic:.3f}, language-specific {specific:.3f}."
    )
    verdict = SUPPORTED if agnostic < specific else NOT_SUPPORTED
    return Finding("C5", verdict, evidence, {"agnostic_cv": agnostic, "specific_cv": specific})


def c6_low_probability_shifts(lape_runs: Sequence[Mapping[str, Any]]) -> Finding:
    """lape_runs: analysis.json's lape.runs[key] of the setting's analysed runs (bins low -> high dense p)."""
    lowest = [run["bins"][0] for run in lape_runs if run.get("bins")]
    lowest = [
        b for b in lowest if is_finite(b.get("mean_abs_shift")) and is_finite(b.get("all_neurons_mean_abs_shift"))
    ]
    if not lowest:
        return Finding("C6", NO_DATA, _NO_ANALYSIS)
    above = sum(b["mean_abs_shift"] > b["all_neurons_mean_abs_shift"] for b in lowest)
    specific = statistics.fmean(b["mean_abs_shift"] for b in lowest)
    baseline = statistics.fmean(b["all_neurons_mean_abs_shift"] for b in lowest)
    binned = [run["bins"] for run in lape_runs if run.get("bins")]
    by_bin = [_finite_mean([bins[i]["mean_rel_abs_shift"] for bins in binned]) for i in range(min(map(len, binned)))]
    evidence = (
        f"Lowest third of dense p (p in [{lowest[0]['low']:.3f}, {lowest[0]['high']:.3f}]): language-specific "
        f"neurons' mean |p' - p| {specific:.4f} vs {baseline:.4f} for all neurons with p in that range; above it "
        f"in {above} of {len(lowest)} runs. Mean |p' - p| / p from low to high p: "
        + ", ".join(f"{v:.3f}" for v in by_bin)
        + "."
    )
    return Finding(
        "C6",
        _share_verdict(above, len(lowest)),
        evidence,
        {"specific": specific, "all_neurons": baseline, "relative_by_bin": by_bin},
    )


_NO_ANALYSIS = "Needs `lp-prune analyze` of these runs (analysis.json in the runs' folder, or --analysis PATH)."


def analysis_findings(analysis: AnalysisResult) -> dict[str, list[Finding]]:
    """C2, C5 and C6 per setting of an analysis (`lp-prune analyze`'s analysis.json)."""
    lape_runs: dict[str, list[Mapping[str, Any]]] = {}
    for run in analysis.runs:
        summary = analysis.lape.get("runs", {}).get(run["key"])
        if run.get("analysed") and summary:
            lape_runs.setdefault(run["setting"], []).append(summary)
    return {
        setting: [
            c2_highest_snr(found),
            c5_agnostic_error_similar(found),
            c6_low_probability_shifts(lape_runs.get(setting, [])),
        ]
        for setting, found in analysis.findings.items()
    }


# --- all claims of a comparison ---------------------------------------------------------------------


def comparison_findings(comparison: Any, analysis: AnalysisResult | None = None) -> dict[str, list[Finding]]:
    """C1-C6 per setting of a compare result (C2, C5, C6 from `analysis` when given, else 'no data')."""
    from lp_prune.evaluation.downstream import task_language

    from_analysis = analysis_findings(analysis) if analysis else {}
    out = {}
    for setting, matrix in comparison.perplexity.items():
        analysed = {f.claim: f for f in from_analysis.get(setting, [])}
        out[setting] = [
            c1_lowest_perplexity(matrix),
            analysed.get("C2") or c2_highest_snr(None),
            c3_downstream_gains(
                comparison.accuracy.get(setting, {}),
                comparison.accuracy_stderr.get(setting, {}),
                comparison.items.get(setting, {}),
                task_language,
            ),
            c4_least_consistent_masks(comparison.iou.get(setting, {})),
            analysed.get("C5") or c5_agnostic_error_similar(None),
            analysed.get("C6") or c6_low_probability_shifts([]),
        ]
    return out


def _finite_mean(values: Sequence[Any]) -> float:
    finite = [v for v in values if is_finite(v)]
    return statistics.fmean(finite) if finite else math.nan
