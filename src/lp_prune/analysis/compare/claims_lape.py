"""C8 (structured pruning only): calibrating on a language removes fewer of that language's LAPE neurons
than calibrating on the other languages does.

Read from analysis.json: per run, `lape.runs.<run>.overlap.down_proj.languages.<L>.removed`, the share
of language L's language-specific neurons whose FFN channel the run removed (a structured run removes
down_proj's input column of a channel whole). Per language L, L's row against the mean of the other
target-language rows, against the repeat floor of that share (the pooled spread over calibration
seeds of every recipe); positive effect: calibrating on L removes fewer of L's neurons.

Decision (verdicts.decide_languages, rule "every"): every language better at ALPHA, two-sided t at
the floor's df: supported (each language must pass, an intersection-union test, so no correction is
needed); some language worse, Holm-corrected over the languages: not supported; otherwise
inconclusive, with the effect each open language could detect (80% power). The share a random
choice of as many channels of the same layers would remove is shown beside: context, not the test.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from lp_prune.analysis.compare.claims_analysis import NO_ANALYSIS
from lp_prune.analysis.compare.stats import is_finite
from lp_prune.analysis.compare.targets import AnalysedRun, row_values, target_floor, target_rows, values_of
from lp_prune.analysis.compare.verdicts import (
    DOES_NOT_APPLY,
    EVERY,
    NO_DATA,
    Finding,
    LanguageCell,
    decide_languages,
    versus_mean,
)
from lp_prune.analysis.result import AnalysisResult

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
    if runs and not all(run.removes_structures for run in runs):
        return Finding("C8", DOES_NOT_APPLY, NOT_STRUCTURED)
    targets = target_rows(runs)
    cells: dict[str, LanguageCell] = {}
    lines: list[str] = []
    means: dict[str, dict[str, float | None]] = {}
    for lang, own_runs in targets.rows.items():
        value = shares(analysis, lang)
        own = row_values(own_runs, value)[0]
        others = [v for o, r in targets.rows.items() if o != lang and (v := row_values(r, value)[0])]
        if own and others:
            floor = target_floor(targets, value)
            cells[lang] = versus_mean(lang, own, others, floor, higher_is_better=False)
            random = values_of(own_runs, shares(analysis, lang, "layer_average"))
            lines.append(_line(lang, cells[lang], own, others, random, floor.text()))
            means[lang] = {
                "own": statistics.fmean(own),
                "others": statistics.fmean(statistics.fmean(row) for row in others),
                "random": statistics.fmean(random) if random else None,
            }
    if not cells:
        return Finding("C8", NO_DATA, _no_data_reason(analysis, runs))
    verdict, decision = decide_languages(cells, EVERY)
    evidence = (
        "Share of each language's LAPE neurons removed (down_proj channels), calibrating on the other languages "
        f"minus on the language itself (positive: own calibration removes fewer): {'; '.join(lines)}. "
        f"Decision: {decision}."
    )
    details = {"languages": {lang: {**cell.to_dict(), **means[lang]} for lang, cell in cells.items()}}
    return Finding("C8", verdict, f"{evidence} {targets.note()}".strip(), details)


def _line(lang: str, cell: LanguageCell, own: list[float], others: list[list[float]], random: list[float], floor: str):
    own_mean, others_mean = statistics.fmean(own), statistics.fmean(statistics.fmean(row) for row in others)
    beside = f", random channels {statistics.fmean(random):.3f}" if random else ""
    return f"{lang} {others_mean:.3f} - {own_mean:.3f} = {cell.estimate.text()}, {floor}{beside}"


def _no_data_reason(analysis: AnalysisResult, runs: Sequence[AnalysedRun]) -> str:
    lape_runs = analysis.lape.get("runs", {})
    if not any(run.key in lape_runs for run in runs):
        return NO_ANALYSIS
    if not any((lape_runs.get(run.key, {}).get("overlap", {}).get(PROJECTION) or {}).get("languages") for run in runs):
        return NO_SHARES
    return "Needs two or more analysed calibration languages with LAPE neurons of their own."
