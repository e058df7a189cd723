"""C3: target-language calibration does not consistently improve downstream accuracy on that language;
the best calibration language varies by task and language (the study's words).

Cells are (task, language) pairs: a task of language L read on L's own calibration row and on the
other target-language rows. A cell's effect is L's row minus the mean of the others, each row the
mean over its calibration draws (differences.TaskScores, Noise). Its noise has two parts:

- items: the paired per-item differences (row means over draws, on the items every run scored),
  var / n, df n - 1; without per-item scores the rows' lm-eval stderrs, unpaired and taken as known;
- draws: the variance of a row's score between its calibration draws, pooled over the rows of the
  task with repeats (df: draws - rows), times sum of weight^2 / draws over the contrasted rows.

The two add (the item x draw interaction is in both, so the sum errs on the safe side) and the df is
Satterthwaite's. With no repeats in any row there is item noise only: the evidence says so.

Decision, on the pooled effect over the cells (differences.pool): the mean of the cells' effects,
each cell counting once (the claim is about cells; precision weights let a few precise cells speak
for all, and favour cells where few items changed), its variance the larger of the model's (items
and draws, the draw part's df at most the rows' repeats) and the cells' own dispersion / cells (df
cells - 1), which holds how much the cells' true effects differ:

- not supported (a consistent improvement): the pooled effect exceeds +margin (one-sided t at ALPHA,
  the TOST's upper side), and no cell is shown worse than the others (one-sided t per cell, Holm);
- supported: an improvement of margin or more is ruled out (the pooled one-sided upper bound lies
  below +margin: the TOST's upper test; the full TOST outcome is named), and every cell's own row has
  repeated draws of its own; else at most inconclusive;
- inconclusive otherwise, with the margin the data could have confirmed and the minimum detectable
  effect (80% power). A pooled gain beyond +margin with some cell shown worse is inconclusive too:
  the gain is not consistent, yet the cells' mean shows one.

No single cell decides. The second half is reported beside: whether the cells differ (Cochran's Q,
differences.heterogeneity) and in how many cells another language is better (one-sided t of each
other language against the own one, Holm over every cell x language pair). Probe tasks where the
dense model is not above chance test nothing and are left out (named in the evidence).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from lp_prune.analysis.compare.differences import (
    Noise,
    TaskScores,
    Z,
    dispersion,
    heterogeneity,
    is_finite,
    pool,
    task_scores,
)
from lp_prune.analysis.compare.stats import ALPHA, Estimate, holm
from lp_prune.analysis.compare.targets import TargetRows
from lp_prune.analysis.compare.verdicts import INCONCLUSIVE, NO_DATA, NOT_SUPPORTED, SUPPORTED, Finding
from lp_prune.config.tasks import choice_probe_family
from lp_prune.evaluation.probe import CHANCE

C3_MARGIN = 0.02  # two points of accuracy: a smaller gain is no improvement worth the name


@dataclass
class Cell:
    """One (task, language) cell: the task's scores on the target rows and the own-minus-others contrast."""

    task: str
    language: str
    metric: str
    scores: TaskScores
    noise: Noise  # own row minus the mean of the other rows

    @property
    def estimate(self) -> Estimate:
        return self.noise.estimate

    @property
    def own_draws(self) -> int:
        return len(self.scores.draws[self.language])

    def others(self) -> list[str]:
        return [row for row in self.scores.draws if row != self.language]

    def versus(self, other: str) -> Estimate:
        """`other`'s row minus the own row: positive where `other` calibrates better for this task."""
        return self.scores.contrast({other: 1.0, self.language: -1.0}).estimate

    def draw_effects(self) -> list[float]:
        """Per draw of the own row: its score minus the mean of the other rows."""
        others = statistics.fmean(statistics.fmean(self.scores.draws[row]) for row in self.others())
        return [score - others for score in self.scores.draws[self.language]]

    def text(self) -> str:
        kind = f"paired, {self.scores.n} items" if self.scores.paired else "unpaired, lm-eval stderrs"
        draws = ", ".join(f"{d:+.3f}" for d in self.draw_effects())
        return f"{self.language} {self.task} ({self.metric}): {self.estimate.text()} [{kind}; own draws {draws}]"

    def to_dict(self) -> dict[str, Any]:
        e = self.estimate
        return {
            "language": self.language,
            "metric": self.metric,
            "effect": e.effect,
            "se": e.se,
            "df": e.df,
            "interval": list(e.interval()),
            "detectable": e.detectable(),
            "paired": self.scores.paired,
            "n": self.scores.n,
            "own_draws": self.own_draws,
            "draw_effects": self.draw_effects(),
            "item_noise_only": self.noise.item_only,
            "item_sd": math.sqrt(self.noise.item_var * self.scores.n) if self.scores.paired else None,
            "draw_sd": math.sqrt(self.scores.draw_var) if self.scores.draw_df else None,
            "diverged": self.scores.diverged,
            "text": self.text(),
        }


def not_above_chance(task: str, dense: float | None, stderr: float | None) -> bool:
    """A probe or CLDR probe task where the dense model does not score above guessing by Z stderrs (or below it):
    it cannot show what pruning or calibration costs. Other tasks: False (their chance is not ours)."""
    if choice_probe_family(task) is None or not is_finite(dense):
        return False
    return dense - CHANCE <= Z * (stderr if is_finite(stderr) else 0.0)


def dense_score(runs: list[Any], task: str) -> tuple[float | None, float | None]:
    """The dense model's score on `task` (mean over the runs that evaluated it) and its stderr (sd / sqrt(n)
    over the first run's per-item scores, else lm-eval's)."""
    from lp_prune.analysis.compare.tables import read_metric

    results = [r for run in runs if (r := ((run.summary.downstream or {}).get("dense") or {}).get(task))]
    scores = [r.get(read_metric(task, r)) for r in results]
    scores = [s for s in scores if is_finite(s)]
    if not scores:
        return None, None
    first, metric = results[0], read_metric(task, results[0])
    items = [s for s in ((first.get("items") or {}).get(metric) or []) if is_finite(s)]
    stderr = statistics.stdev(items) / math.sqrt(len(items)) if len(items) >= 2 else first.get(f"{metric}_stderr")
    return statistics.fmean(scores), stderr


def downstream_cells(
    targets: TargetRows, task_language: Callable[[str], str | None]
) -> tuple[dict[str, Cell], list[str]]:
    """The cells of the target rows' downstream tasks, and the probe tasks left out at chance."""
    from lp_prune.analysis.compare.tables import read_metric

    runs = [run for group in targets.rows.values() for run in group]
    tasks = sorted({task for run in runs for task in ((run.summary.downstream or {}).get("pruned") or {})})
    cells: dict[str, Cell] = {}
    skipped = []
    for task in tasks:
        lang = task_language(task)
        if lang not in targets.rows:
            continue
        scores = task_scores(task, targets.rows)
        if scores is None or lang not in scores.draws or len(scores.draws) < 2:
            continue
        if not_above_chance(task, *dense_score(runs, task)):
            skipped.append(task)
            continue
        others = [row for row in scores.draws if row != lang]
        noise = scores.contrast({lang: 1.0, **{row: -1.0 / len(others) for row in others}})
        first = next(r for run in runs if (r := ((run.summary.downstream or {}).get("pruned") or {}).get(task)))
        cells[task] = Cell(task, lang, read_metric(task, first), scores, noise)
    return cells, skipped


def draw_df_cap(targets: TargetRows) -> int:
    """The repeats of the target rows (draws - rows): what every task's draw noise is read from."""
    return sum(len(runs) - 1 for runs in targets.rows.values())


def other_language_better(cells: dict[str, Cell]) -> dict[str, dict[str, Any]]:
    """Per cell, the best other row and whether some other row is shown better than the own one
    (one-sided t, Holm over every cell x other-row pair)."""
    pairs = [(task, other, cell.versus(other)) for task, cell in cells.items() for other in cell.others()]
    rejected = holm([e.p_greater(0.0) for _, _, e in pairs])
    out: dict[str, dict[str, Any]] = {}
    for (task, other, e), better in zip(pairs, rejected, strict=True):
        entry = out.setdefault(task, {"best_other": None, "best_effect": -math.inf, "better": []})
        if e.effect > entry["best_effect"]:
            entry.update(best_other=other, best_effect=e.effect, best_text=e.text())
        if better:
            entry["better"].append(other)
    return out


def c3_downstream_gains(
    targets: TargetRows, task_language: Callable[[str], str | None], margin: float = C3_MARGIN
) -> Finding:
    cells, skipped = downstream_cells(targets, task_language)
    at_chance = f" Left out, the dense model not above chance: {', '.join(skipped)}." if skipped else ""
    if not cells:
        reason = "Needs downstream results (eval.tasks) of runs calibrated on a task's language and others."
        return Finding("C3", NO_DATA, reason + at_chance)
    spread = dispersion([[cell.noise for cell in cells.values()]])
    pooled_noise = pool([cell.noise for cell in cells.values()], draw_df_cap(targets), spread)
    pooled = pooled_noise.estimate
    worse_flags = holm([cell.estimate.p_less(0.0) for cell in cells.values()])
    worse = [task for task, flag in zip(cells, worse_flags, strict=True) if flag]
    unrepeated = sorted({cell.language for cell in cells.values() if cell.own_draws < 2})
    others = other_language_better(cells)
    better = [task for task, entry in others.items() if entry["better"]]
    differ = heterogeneity([cell.estimate for cell in cells.values()])
    verdict, decision = _decide(pooled, worse, unrepeated, margin)
    if pooled_noise.item_only and pooled.judged:
        decision += "; item noise only: no row has repeated draws, so the calibration draw's noise is not in it"
    n = len(cells)
    up, down = sum(c.estimate.effect > 0 for c in cells.values()), sum(c.estimate.effect < 0 for c in cells.values())
    pairs = sum(len(cell.others()) for cell in cells.values())
    varies = f"cells differ: {differ.text()}" if differ else "one cell: no test of whether cells differ"
    evidence = (
        f"Own-language calibration minus the mean of the other languages, per cell (95% interval, t with "
        f"item + draw noise, Satterthwaite df): {'; '.join(cell.text() for cell in cells.values())}. "
        f"Mean over {n} cells (each once; {_noise_source(pooled_noise)}): "
        f"{pooled.text()}; margin {margin:g}: TOST "
        f"{pooled.equivalence(margin)} (upper test p = {pooled.p_less(margin):.3g}, gain test p = "
        f"{pooled.p_greater(margin):.3g}); minimum detectable effect {pooled.detectable():.3f} (80% power); "
        f"cells shown worse than the others: {len(worse)} of {n} (one-sided t, Holm over {n} cells); direction "
        f"{up} up / {down} down (sign test p = {sign_test(up, down):.2g}). "
        f"Decision: {decision}. The best language varies: {varies}; another language is better in "
        f"{len(better)} of {n} cells (one-sided t, Holm over {pairs} cell x language pairs)."
    )
    details = {
        "cells": {task: cell.to_dict() for task, cell in cells.items()},
        "margin": margin,
        "pooled": _estimate_dict(pooled) | {"item_noise_only": pooled_noise.item_only},
        "worse_holm": worse,
        "rows_without_repeats": unrepeated,
        "heterogeneity": asdict(differ) if differ else None,
        "cell_dispersion": {"variance": spread[0], "df": spread[1]},
        "other_language_better": others,
        "left_out_at_chance": skipped,
    }
    return Finding("C3", verdict, f"{evidence}{at_chance} {targets.note()}".strip(), details)


def _decide(pooled: Estimate, worse: list[str], unrepeated: list[str], margin: float) -> tuple[str, str]:
    if not pooled.judged:
        return INCONCLUSIVE, "no noise to judge the pooled effect against"
    if pooled.p_greater(margin) < ALPHA and not worse:
        return NOT_SUPPORTED, f"a consistent improvement: the pooled gain exceeds {margin:g} and no cell is worse"
    if pooled.below(margin):
        ruled = f"a gain of {margin:g} or more is ruled out (TOST: {pooled.equivalence(margin)})"
        if unrepeated:
            return INCONCLUSIVE, (
                f"{ruled}, but the rows {', '.join(unrepeated)} have no repeated draws of their own, so "
                "no draw noise of their own to judge against: at most inconclusive"
            )
        return SUPPORTED, ruled
    why = f"cells shown worse: {', '.join(worse)}; " if worse and pooled.p_greater(margin) < ALPHA else ""
    return INCONCLUSIVE, (
        f"{why}neither a consistent gain beyond {margin:g} nor its absence is shown; these data could "
        f"confirm a margin of {pooled.confirmable_margin():.3f} (TOST) and detect {pooled.detectable():.3f}"
    )


def _noise_source(noise: Noise) -> str:
    """Which variance the pooled effect carries."""
    if noise.dispersion is not None:
        return "variance from the cells' dispersion, larger than items and draws explain"
    return "variance from items and draws" if not noise.item_only else "variance from items only"


def _estimate_dict(e: Estimate) -> dict[str, Any]:
    return {"effect": e.effect, "se": e.se, "df": e.df, "interval": list(e.interval()), "text": e.text()}


def sign_test(positive: int, negative: int) -> float:
    """Two-sided binomial p-value of `positive` successes in positive + negative fair coin flips."""
    n = positive + negative
    if n == 0:
        return math.nan
    k = min(positive, negative)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def family_z(cells: int) -> float:
    """The bound's z for `cells` chances: one-sided 2.5% for them all together (Bonferroni), at least Z."""
    return max(Z, statistics.NormalDist().inv_cdf(1 - 0.025 / cells))
