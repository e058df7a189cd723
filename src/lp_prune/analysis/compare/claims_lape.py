"""C8 (structured pruning only): calibrating on a language removes fewer of that language's LAPE neurons
than calibrating on the other languages does.

Read from analysis.json: per run, `lape.runs.<run>.overlap.down_proj.languages.<L>.removed`, the share
of language L's language-specific neurons whose FFN channel the run removed (a structured run removes
down_proj's input column of a channel whole). Per language L, L's row against the mean of the other
target-language rows, against the repeat floor of that share (the pooled spread over calibration
seeds of every recipe); positive effect: calibrating on L removes fewer of L's neurons.

Decision, as for C1 and C2 with the family of languages in mind: every language better beyond Z
stderrs: supported (each language must pass, so no correction is needed); some language worse beyond
the Bonferroni z over the languages: not supported (one of k languages is k chances for noise);
otherwise inconclusive, with the effect each language could detect (80% power). The share a random
choice of as many channels of the same layers would remove is shown beside: context, not the test.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from lp_prune.analysis.compare.claims_analysis import NO_ANALYSIS
from lp_prune.analysis.compare.claims_downstream import family_z
from lp_prune.analysis.compare.differences import Z, is_finite
from lp_prune.analysis.compare.targets import AnalysedRun, floor_over_recipes, target_rows, values_of
from lp_prune.analysis.compare.verdicts import (
    DOES_NOT_APPLY,
    INCONCLUSIVE,
    NO_DATA,
    NO_FLOOR,
    NOT_SUPPORTED,
    POWER_Z,
    SUPPORTED,
    Contrast,
    Finding,
    contrast,
)
from lp_prune.analysis.result import AnalysisResult
from lp_prune.pruning.method import structured

PROJECTION = "down_proj"  # its input columns are the FFN channels a structured run removes
NOT_STRUCTURED = (
    "The method removes no FFN channel whole (it prunes weight by weight, or quantizes), so no LAPE neuron is "
    "removed; the pruned share of their weights is in analyze's LAPE overlap table."
)
NO_SHARES = (
    "Needs the share of each language's LAPE neurons removed by each run "
    f"(analysis.json `lape.runs.<run>.overlap.{PROJECTION}.languages`, written by `lp-prune analyze`)."
)


def shares(analysis: AnalysisResult, lang: str, field: str = "removed") -> Callable[[AnalysedRun], float | None]:
    """A run's share of `lang`'s LAPE neurons removed (or, field 'layer_average', what random channels remove)."""

    def value(run: AnalysedRun) -> float | None:
        overlap = analysis.lape.get("runs", {}).get(run.key, {}).get("overlap", {}).get(PROJECTION, {})
        v = (overlap.get("languages") or {}).get(lang, {}).get(field)
        return v if is_finite(v) else None

    return value


def c8_lape_survival(analysis: AnalysisResult, runs: Sequence[AnalysedRun]) -> Finding:
    if runs and not all(structured(run.method) for run in runs):
        return Finding("C8", DOES_NOT_APPLY, NOT_STRUCTURED)
    targets = target_rows(runs)
    per_language = {}
    for lang, own_runs in targets.rows.items():
        value = shares(analysis, lang)
        own = values_of(own_runs, value)
        others = [v for o, r in targets.rows.items() if o != lang and (v := values_of(r, value))]
        if own and others:
            c = contrast(own, others, floor_over_recipes(runs, value), higher_is_better=False)
            random = values_of(own_runs, shares(analysis, lang, "layer_average"))
            per_language[lang] = _cell(lang, c, own, others, random)
    if not per_language:
        return Finding("C8", NO_DATA, _no_data_reason(analysis, runs))
    verdict, decision = _verdict(per_language)
    evidence = (
        "Share of each language's LAPE neurons removed (down_proj channels), calibrating on the other languages "
        f"minus on the language itself (positive: own calibration removes fewer): "
        f"{'; '.join(v['text'] for v in per_language.values())}. Decision: {decision}."
    )
    details = {"languages": per_language, "bound_z": family_z(len(per_language))}
    return Finding("C8", verdict, f"{evidence} {targets.note()}".strip(), details)


def _cell(lang: str, c: Contrast, own: list[float], others: list[list[float]], random: list[float]) -> dict[str, Any]:
    own_mean, others_mean = statistics.fmean(own), statistics.fmean(statistics.fmean(row) for row in others)
    random_mean = statistics.fmean(random) if random else None
    beside = f", random channels {random_mean:.3f}" if random_mean is not None else ""
    return {
        "own": own_mean,
        "others": others_mean,
        "random": random_mean,
        "effect": c.effect,
        "se": c.se,
        "outcome": c.outcome,
        "detectable": c.detectable,
        "text": f"{lang} {others_mean:.3f} - {own_mean:.3f} = {c.text()}{beside}",
    }


def _verdict(cells: dict[str, dict[str, Any]]) -> tuple[str, str]:
    outcomes = [cell["outcome"] for cell in cells.values()]
    if NO_FLOOR in outcomes:
        return INCONCLUSIVE, "no repeats (calibration seeds) of any recipe, so no noise floor"
    if all(o == "better" for o in outcomes):
        return SUPPORTED, f"every language's own calibration removes fewer of its neurons beyond Z = {Z:g}"
    z = family_z(len(cells))
    worse = [lang for lang, cell in cells.items() if cell["effect"] < -z * cell["se"]]
    if worse:
        return NOT_SUPPORTED, f"own calibration removes more of its neurons in {', '.join(worse)} (beyond z = {z:.2f})"
    open_cells = {lang: cell for lang, cell in cells.items() if cell["outcome"] != "better"}
    undecided = ", ".join(f"{lang} {cell['detectable']:.3f}" for lang, cell in open_cells.items())
    better = sum(o == "better" for o in outcomes)
    return (
        INCONCLUSIVE,
        f"{better} of {len(cells)} languages beyond noise, none worse beyond z = {z:.2f}; the others detect "
        f"only effects of at least {undecided} (80% power, {POWER_Z:g} stderrs)",
    )


def _no_data_reason(analysis: AnalysisResult, runs: Sequence[AnalysedRun]) -> str:
    lape_runs = analysis.lape.get("runs", {})
    if not any(run.key in lape_runs for run in runs):
        return NO_ANALYSIS
    if not any((lape_runs.get(run.key, {}).get("overlap", {}).get(PROJECTION) or {}).get("languages") for run in runs):
        return NO_SHARES
    return "Needs two or more analysed calibration languages with LAPE neurons of their own."
