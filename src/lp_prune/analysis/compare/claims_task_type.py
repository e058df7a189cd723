"""Q1, the study's open question 1: does the calibration-language effect on downstream accuracy depend
on the task type?

The cells are C3's (claims_downstream: own-language row minus the mean of the others, per task and
language, with item and draw noise). Each task has a type (task_type, the one mapping): the probe's
families by name, the CLDR probe's families by CLDR_TYPES (knowledge and ordering types of their own,
'knowledge (CLDR): currency'), the proxies and HellaSwag 'next sentence', Belebele 'reading', ARC and MMLU
'knowledge/reasoning', MKQA 'open QA'. Per type, the mean of its cells over languages (differences.pool:
each cell once; its variance the larger of the items' and draws' and the dispersion of the cells
about their type's mean, pooled over the types (df cells - types) / the type's cells).

- differs by task type: the types' effects differ (Cochran's Q between them on df types - 1, read on
  Welch's F when the noise has finite df; differences.heterogeneity) at ALPHA;
- no difference shown: they do not, and every pair of types is equivalent within +-margin (TOST at
  ALPHA per pair; all pairs must pass, an intersection-union test, so no multiplicity correction),
  and every cell's own row has repeated draws of its own;
- inconclusive otherwise, with the margin the data could confirm (the widest pair) and the smallest
  difference between two types they would detect (80% power);
- no data: fewer than two types with cells.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from lp_prune.analysis.compare.claims_downstream import C3_MARGIN, Cell, downstream_cells, draw_df_cap
from lp_prune.analysis.compare.differences import dispersion, heterogeneity, pool, satterthwaite
from lp_prune.analysis.compare.stats import ALPHA, EQUIVALENT, Estimate
from lp_prune.analysis.compare.targets import TargetRows
from lp_prune.analysis.compare.verdicts import INCONCLUSIVE, NO_DATA, Finding
from lp_prune.config.tasks import BELEBELE_PREFIX, CLDR_FAMILIES, STUDY_TASKS, cldr_family, probe_family, proxy_language

DIFFERS = "differs by task type"
NO_DIFFERENCE = "no difference shown"

BENCHMARK_TYPES = {
    "belebele": "reading",
    "arc": "knowledge/reasoning",
    "mmlu": "knowledge/reasoning",
    "hellaswag": "next sentence",
    "mkqa": "open QA",
}
# The CLDR probe's families (lp_prune.evaluation.probe_cldr): knowledge of countries, and the calendar's order.
CLDR_TYPES = {
    "continent": "knowledge (CLDR): continent",
    "currency": "knowledge (CLDR): currency",
    "language": "knowledge (CLDR): official language",
    "month": "ordering (CLDR): month",
    "weekday": "ordering (CLDR): weekday",
}
assert set(CLDR_TYPES) == set(CLDR_FAMILIES), "every CLDR probe family has a task type"
_BENCHMARK_OF_TASK = {name: key for key, table in STUDY_TASKS.items() for name in table.values() if name}


def task_type(task: str) -> str | None:
    """The type of a downstream task: the probe's family, the CLDR probe's by CLDR_TYPES, 'next sentence'
    for the proxies, the study's benchmarks by BENCHMARK_TYPES (any Belebele config: 'reading'); None for
    other tasks."""
    if proxy_language(task):
        return "next sentence"
    if family := probe_family(task):
        return family
    if family := cldr_family(task):
        return CLDR_TYPES[family]
    if task in _BENCHMARK_OF_TASK:
        return BENCHMARK_TYPES[_BENCHMARK_OF_TASK[task]]
    return "reading" if task.startswith(BELEBELE_PREFIX) else None


def _difference(a: Estimate, b: Estimate) -> Estimate:
    """a - b of two independent estimates (Satterthwaite's df)."""
    df = satterthwaite([(a.se**2, a.df), (b.se**2, b.df)])
    return Estimate(a.effect - b.effect, (a.se**2 + b.se**2) ** 0.5, df)


def q1_task_type(targets: TargetRows, task_language: Callable[[str], str | None], margin: float = C3_MARGIN) -> Finding:
    cells, skipped = downstream_cells(targets, task_language)
    at_chance = f" Left out, the dense model not above chance: {', '.join(skipped)}." if skipped else ""
    by_type: dict[str, list[Cell]] = {}
    untyped = []
    for task, cell in cells.items():
        kind = task_type(task)
        if kind is None:
            untyped.append(task)
        else:
            by_type.setdefault(kind, []).append(cell)
    other = f" Tasks of no known type, left out: {', '.join(untyped)}." if untyped else ""
    if len(by_type) < 2:
        found = f"one task type ({next(iter(by_type))})" if by_type else "no typed task"
        reason = f"Needs downstream cells of two or more task types; these runs have {found}."
        return Finding("Q1", NO_DATA, reason + at_chance + other)
    cap = draw_df_cap(targets)
    spread = dispersion([[cell.noise for cell in group] for group in by_type.values()])
    pooled = {kind: pool([cell.noise for cell in group], cap, spread) for kind, group in sorted(by_type.items())}
    estimates = {kind: noise.estimate for kind, noise in pooled.items()}
    differ = heterogeneity(list(estimates.values()))
    pairs = {f"{a} - {b}": _difference(estimates[a], estimates[b]) for a, b in itertools.combinations(estimates, 2)}
    unrepeated = sorted({cell.language for cell in cells.values() if cell.own_draws < 2})
    verdict, decision = _decide(differ, pairs, unrepeated, margin)
    if any(noise.item_only for noise in pooled.values()):
        decision += "; item noise only in some types: no row has repeated draws there"
    per_type = "; ".join(
        f"{kind} ({len(by_type[kind])} cells: {', '.join(c.task for c in by_type[kind])}): {e.text()}"
        for kind, e in estimates.items()
    )
    widest = max(pairs, key=lambda p: abs(pairs[p].effect))
    evidence = (
        f"Own-language minus other-language calibration per task type, the mean of its cells over languages "
        f"(95% interval, t on item + draw noise, or on the cells' dispersion about their type's mean where "
        f"larger): {per_type}. Between types: "
        f"{differ.text() if differ else 'no noise to judge against'}. Largest difference {widest}: "
        f"{pairs[widest].text()}; margin {margin:g}, TOST per pair (all pairs must pass, so no correction); "
        f"minimum detectable difference {max(e.detectable() for e in pairs.values()):.3f} (80% power). "
        f"Decision: {decision}."
    )
    details = {
        "types": {kind: _entry(e, by_type[kind]) for kind, e in estimates.items()},
        "heterogeneity": asdict(differ) if differ else None,
        "cell_dispersion": {"variance": spread[0], "df": spread[1]},
        "pairs": {
            name: {"effect": e.effect, "se": e.se, "df": e.df, "tost": e.equivalence(margin)}
            for name, e in pairs.items()
        },
        "margin": margin,
        "rows_without_repeats": unrepeated,
        "left_out_at_chance": skipped,
        "untyped": untyped,
    }
    return Finding("Q1", verdict, f"{evidence}{at_chance}{other} {targets.note()}".strip(), details)


def _decide(spread: Any, pairs: dict[str, Estimate], unrepeated: list[str], margin: float) -> tuple[str, str]:
    if spread is None:
        return INCONCLUSIVE, "no noise to judge the types against"
    if spread.p < ALPHA:
        return DIFFERS, f"the types' effects differ (p = {spread.p:.3g} < {ALPHA:g})"
    if all(e.equivalence(margin) == EQUIVALENT for e in pairs.values()):
        if unrepeated:
            return INCONCLUSIVE, (
                f"every pair of types is within {margin:g}, but the rows {', '.join(unrepeated)} have no "
                "repeated draws of their own: at most inconclusive"
            )
        return NO_DIFFERENCE, f"every pair of types is equivalent within {margin:g} (TOST)"
    confirmable = max(e.confirmable_margin() for e in pairs.values())
    detectable = max(e.detectable() for e in pairs.values())
    return INCONCLUSIVE, (
        f"no difference shown, nor equivalence within {margin:g}: these data could confirm a margin of "
        f"{confirmable:.3f} and detect a difference of {detectable:.3f} between the least-measured types"
    )


def _entry(e: Estimate, cells: list[Cell]) -> dict[str, Any]:
    low, high = e.interval()
    return {"effect": e.effect, "se": e.se, "df": e.df, "interval": [low, high], "cells": [c.task for c in cells]}
