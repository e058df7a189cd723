"""The perplexity claims: C1 (target-language calibration generally gives the lowest perplexity on that
language) and C7 (calibrating on a similar or an outlier language gives no consistent advantage).

Effects are differences of log perplexity on the evaluation language, shown as the perplexity ratio
they stand for (-3.0%: 0.97 times the competitor's perplexity). The noise is that language's own
repeat floor: the spread of its log perplexity over the calibration draws of the single-language rows
(pooled over those rows, with its degrees of freedom). A run whose perplexity is NaN, inf or missing
where the others have one diverged: it counts as the worst value and is named.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from lp_prune.analysis.compare.stats import ALPHA, Estimate, holm, is_finite
from lp_prune.analysis.compare.targets import TargetRows, row_values, target_floor, target_rows
from lp_prune.analysis.compare.verdicts import (
    GENERALLY,
    INCONCLUSIVE,
    NO_DATA,
    NOT_SUPPORTED,
    SUPPORTED,
    Finding,
    LanguageCell,
    decide_languages,
    group_contrast,
    versus_each,
)
from lp_prune.analysis.runs import Run
from lp_prune.languages import relation

# C7: an advantage smaller than this (2% perplexity) is no advantage worth the name (compare's
# --margins c7 overrides it).
C7_MARGIN = 0.02


def log_perplexity(lang: str):
    """A run's log perplexity on `lang`: None when it was not evaluated there, NaN when it diverged."""

    def value(run: Run) -> float | None:
        values = run.summary.perplexity.get("pruned", {})
        if lang not in values:
            return None
        v = values[lang]
        return math.log(v) if is_finite(v) and v > 0 else math.nan

    return value


def ratio_text(e: Estimate) -> str:
    """A log-perplexity effect (positive: lower perplexity) as own / competitor - 1 in %, with its interval."""
    change = 100 * (math.exp(-e.effect) - 1) if is_finite(e.effect) else math.nan
    if not e.judged:
        return f"{change:+.1f}% (no noise to judge against)" if is_finite(change) else "diverged"
    low, high = e.interval()
    df = f"t, df {e.df:.3g}"
    return f"{change:+.1f}% [{100 * (math.exp(-high) - 1):+.1f}%, {100 * (math.exp(-low) - 1):+.1f}%] ({df})"


def c1_lowest_perplexity(runs: Sequence[Run]) -> Finding:
    """Per target language L: its own row's log perplexity on L against every other single-language row."""
    targets = target_rows(runs)
    cells: dict[str, LanguageCell] = {}
    floors: dict[str, str] = {}
    for lang in targets.rows:
        value = log_perplexity(lang)
        rows = {row: row_values(r, value) for row, r in targets.rows.items()}
        own, own_diverged = rows[lang]
        others = {row: v for row, (v, d) in rows.items() if row != lang and (v or d)}
        if not (own or own_diverged) or not others:
            continue
        floor = target_floor(targets, value)
        diverged = {row: d for row, (_, d) in rows.items()}
        cells[lang] = versus_each(lang, own, others, floor, False, diverged)
        floors[lang] = floor.text("%", 100)
    if len(targets.rows) < 2 or not cells:
        return Finding("C1", NO_DATA, "Needs runs calibrated on two or more single languages, evaluated on them.")
    verdict, decision = decide_languages(cells, GENERALLY)
    per_language = {lang: {**cell.to_dict(), "floor": floors[lang]} for lang, cell in cells.items()}
    lines = [f"{lang} vs {c.versus} {ratio_text(c.estimate)}, {floors[lang]}" for lang, c in cells.items()]
    evidence = (
        "Own-language calibration's perplexity on that language against its closest competitor "
        f"(own / competitor - 1; each competitor tested): {'; '.join(lines)}. Decision: {decision}."
    )
    return Finding("C1", verdict, _with_note(evidence, targets), {"languages": per_language})


def c7_related_languages(runs: Sequence[Run], margin: float = C7_MARGIN) -> Finding:
    """Per relation (similar, outlier): calibrating on a target's related languages against its neutral
    ones (neither similar nor outlier), on the target's perplexity; cells are targets, pooled over
    them. "No advantage" is the non-superiority half of the two one-sided tests: an advantage of
    `margin` or more ruled out (a disadvantage is no advantage). Supported when every relation rules
    it out (intersection-union); not supported when a relation's advantage beyond the margin is shown
    (Holm over the relations); otherwise inconclusive, with the margin the data could have ruled out."""
    targets = target_rows(runs)
    log_margin = -math.log(1 - margin)  # advantage in log perplexity that a margin-% lower perplexity is
    by_kind: dict[str, dict[str, Estimate]] = {"similar": {}, "outlier": {}}
    named: dict[str, dict[str, Any]] = {}
    for target in targets.rows:
        value = log_perplexity(target)
        rows = {c: row_values(r, value) for c, r in targets.rows.items() if c != target}
        neutral = [_worst_if_diverged(v, d) for c, (v, d) in rows.items() if relation(target, c) == "other"]
        for kind, cells in by_kind.items():
            related = [_worst_if_diverged(v, d) for c, (v, d) in rows.items() if relation(target, c) == kind]
            if not related or not neutral or not all(related) or not all(neutral):
                continue
            floor = target_floor(targets, value)
            cells[target] = group_contrast(related, neutral, floor, higher_is_better=False)
            names = [c for c in rows if relation(target, c) == kind]
            named[f"{target} {kind}"] = {"calibrations": names, "text": f"{target} from {', '.join(names)}"}
    pooled = {kind: _pooled(cells) for kind, cells in by_kind.items() if cells}
    if not pooled:
        return Finding("C7", NO_DATA, "Needs targets with similar or outlier calibration languages and neutral ones.")
    refuted = holm([e.p_greater(log_margin) for e in pooled.values()])
    ruled_out = {kind: e.below(log_margin) for kind, e in pooled.items()}
    if all(ruled_out.values()):
        verdict = SUPPORTED
    elif any(refuted):
        verdict = NOT_SUPPORTED
    else:
        verdict = INCONCLUSIVE
    parts = []
    for (kind, e), shown in zip(pooled.items(), refuted, strict=True):
        state = "advantage ruled out" if ruled_out[kind] else "advantage shown" if shown else "cannot tell"
        cells = "; ".join(f"{t} {ratio_text(c)}" for t, c in by_kind[kind].items())
        bound = 100 * (1 - math.exp(-e.interval(1 - 2 * ALPHA)[1])) if e.judged else math.nan
        parts.append(
            f"{kind} vs neutral languages, pooled over {len(by_kind[kind])} targets: {ratio_text(e)} -> {state} "
            f"(could rule out {bound:.1f}% or more; per target: {cells})"
        )
    evidence = (
        f"Perplexity on the target when calibrating on its related languages against its neutral ones; no "
        f"advantage means an advantage of {100 * margin:g}% or more is ruled out (one-sided t at {ALPHA:g}; "
        f"every relation must rule it out, and a shown advantage is Holm-corrected over the relations): "
        f"{'. '.join(parts)}."
    )
    details = {
        "margin": margin,
        "relations": {kind: {"effect": e.effect, "se": e.se, "df": e.df} for kind, e in pooled.items()},
        "cells": named,
    }
    return Finding("C7", verdict, _with_note(evidence, targets), details)


def _worst_if_diverged(values: list[float], diverged: list[str]) -> list[float]:
    """A row with a diverged draw: as bad as can be (+inf log perplexity), so it never shows an advantage."""
    return [math.inf] if diverged else values


def _pooled(cells: dict[str, Estimate]) -> Estimate:
    """The mean effect over targets; its variance the mean of the cells' variances over their count
    (cells treated as independent), at the smallest df of the cells (conservative)."""
    estimates = list(cells.values())
    effect = math.fsum(e.effect for e in estimates) / len(estimates)
    if not all(e.judged for e in estimates):
        return Estimate(effect, math.nan, 0)
    se = math.sqrt(math.fsum(e.se**2 for e in estimates)) / len(estimates)
    return Estimate(effect, se, min(e.df for e in estimates))


def _with_note(evidence: str, targets: TargetRows) -> str:
    return f"{evidence} {targets.note()}".strip()
