"""The perplexity claims: C1 (target-language calibration gives the lowest perplexity on that
language) and C7 (calibrating on a similar or an outlier language gives no consistent advantage).

Effects are differences of log perplexity (shown as %), judged against the repeat floor of the log
perplexity on the evaluation language: the pooled spread over the seeds of every recipe of the setting.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from lp_prune.analysis.compare.differences import Z, is_finite
from lp_prune.analysis.compare.targets import floor_over_recipes, target_rows, values_of
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
from lp_prune.analysis.runs import Run
from lp_prune.languages import relation

# C7: an advantage smaller than this (2% perplexity) does not count; an upper bound below it rules
# out a meaningful advantage.
MIN_ADVANTAGE = math.log(1.02)


def log_perplexity(lang: str):
    def value(run: Run) -> float | None:
        v = run.summary.perplexity.get("pruned", {}).get(lang)
        return math.log(v) if is_finite(v) and v > 0 else None

    return value


def _percent(c: Contrast) -> str:
    """A log-perplexity contrast as a percentage margin (positive: lower perplexity than the others)."""
    if not is_finite(c.se):
        return f"{100 * c.effect:+.1f}% (no floor)"
    return f"{100 * c.effect:+.1f}% ± {100 * c.se:.1f}% ({c.outcome})"


def c1_lowest_perplexity(runs: Sequence[Run]) -> Finding:
    """Per target language L: its own row's log perplexity on L against the best other target row."""
    targets = target_rows(runs)
    per_language: dict[str, dict[str, Any]] = {}
    for lang, own_runs in targets.rows.items():
        value = log_perplexity(lang)
        own = values_of(own_runs, value)
        others = {other: values_of(r, value) for other, r in targets.rows.items() if other != lang}
        others = {other: v for other, v in others.items() if v}
        if not own or not others:
            continue
        best = min(others, key=lambda other: statistics.fmean(others[other]))
        c = contrast(own, [others[best]], floor_over_recipes(runs, value), higher_is_better=False)
        per_language[lang] = {"best_other": best, "effect": c.effect, "se": c.se, "outcome": c.outcome}
        per_language[lang]["text"] = f"{lang} vs {best} {_percent(c)}"
    if len(targets.rows) < 2 or not per_language:
        return _finding("C1", NO_DATA, "Needs runs calibrated on two or more single languages, evaluated on them.")
    outcomes = [v["outcome"] for v in per_language.values()]
    verdict = combine(outcomes)
    evidence = (
        "Own-language calibration's perplexity margin over the best other language on that language "
        f"(Z = {Z:g}): {'; '.join(v['text'] for v in per_language.values())}."
    )
    if NO_FLOOR in outcomes:
        evidence += " No repeats (calibration seeds) of any recipe, so no noise floor: at most inconclusive."
    return _finding("C1", verdict, f"{evidence} {targets.note()}".strip(), {"languages": per_language})


def c7_related_languages(runs: Sequence[Run]) -> Finding:
    """Per target T and relation (similar, outlier): those calibration rows' perplexity on T against
    the remaining non-target rows ('other' and the other relation). A relation gives a consistent
    advantage when every cell of it is better beyond noise: then not supported. Supported when each
    relation has a cell that rules an advantage out (upper bound below MIN_ADVANTAGE); otherwise
    inconclusive."""
    targets = target_rows(runs)
    cells: dict[str, dict[str, Any]] = {}
    for target in targets.rows:
        value = log_perplexity(target)
        calibrations = {c: values_of(r, value) for c, r in targets.rows.items() if c != target}
        calibrations = {c: v for c, v in calibrations.items() if v}
        for kind in ("similar", "outlier"):
            related = [v for c, v in calibrations.items() if relation(target, c) == kind]
            rest = [v for c, v in calibrations.items() if relation(target, c) != kind]
            if not related or not rest:
                continue
            pooled_related = [x for v in related for x in v]  # the related rows' repeats together
            c = contrast(pooled_related, rest, floor_over_recipes(runs, value), higher_is_better=False)
            names = [c_ for c_ in calibrations if relation(target, c_) == kind]
            cells[f"{target} {kind}"] = {
                "calibrations": names,
                "effect": c.effect,
                "se": c.se,
                "outcome": c.outcome,
                "ruled_out": is_finite(c.se) and c.effect + Z * c.se < MIN_ADVANTAGE,
                "text": f"{target} from {kind} ({', '.join(names)}): {_percent(c)}",
            }
    if not cells:
        return _finding("C7", NO_DATA, "Needs a target with similar or outlier calibration languages and others.")
    outcomes = [v["outcome"] for v in cells.values()]
    verdict = _c7_verdict(cells)
    ruled = [k for k, v in cells.items() if v["ruled_out"]]
    evidence = (
        "Perplexity margin on the target of calibrating on its similar / outlier languages over its other "
        f"languages: {'; '.join(v['text'] for v in cells.values())}. An advantage of "
        f"{100 * (math.exp(MIN_ADVANTAGE) - 1):.0f}% or more is ruled out in {len(ruled)} of {len(cells)}"
        + (f" ({', '.join(ruled)})." if ruled else ".")
    )
    if NO_FLOOR in outcomes:
        evidence += " No repeats (calibration seeds), so no noise floor: at most inconclusive."
    return _finding("C7", verdict, f"{evidence} {targets.note()}".strip(), {"cells": cells})


def _c7_verdict(cells: dict[str, dict[str, Any]]) -> str:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for key, cell in cells.items():
        by_kind.setdefault(key.split(" ")[1], []).append(cell)
    if any(cell["outcome"] == NO_FLOOR for cell in cells.values()):
        return INCONCLUSIVE
    if any(all(cell["outcome"] == "better" for cell in kind) for kind in by_kind.values()):
        return NOT_SUPPORTED
    if all(any(cell["ruled_out"] for cell in kind) for kind in by_kind.values()):
        return SUPPORTED
    return INCONCLUSIVE


def _finding(claim: str, verdict: str, evidence: str, details: dict[str, Any] | None = None) -> Finding:
    return Finding(claim, verdict, evidence, details or {})
