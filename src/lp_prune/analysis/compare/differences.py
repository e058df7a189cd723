"""Downstream differences between calibrations.

- Difference, target_difference: one row against others, item by item (the paired difference of
  per-item scores, lm-eval's per-sample results kept by the runs), else the unpaired difference of
  accuracies with their stderrs combined; beyond Z stderrs a gain or a loss (recipes.py).
- TaskScores, Noise: one task on the target-language rows with both of its noises, items and
  calibration draws, each with its df; contrasts between rows; pool (the mean over cells) and
  heterogeneity (whether cells differ): claims C3 and Q1 (claims_downstream.py, claims_task_type.py).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from lp_prune.analysis.compare.stats import Estimate, pooled_sd

Z = 2.0  # a difference beyond Z standard errors counts as real


def is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass
class Difference:
    """mean (a - b) with its standard error over n items; paired when both were scored item by item."""

    mean: float
    stderr: float
    n: int
    paired: bool

    @property
    def outcome(self) -> str:
        if not is_finite(self.stderr) or self.stderr == 0:
            return "gain" if self.mean > 0 else "loss" if self.mean < 0 else "no difference"
        return "gain" if self.mean > Z * self.stderr else "loss" if self.mean < -Z * self.stderr else "within noise"

    def text(self) -> str:
        kind = "paired" if self.paired else "unpaired"
        return f"{self.mean:+.3f} ± {self.stderr:.3f} ({kind}, n={self.n}: {self.outcome})"


def paired_difference(a: Mapping[Any, float], b: Mapping[Any, float]) -> Difference | None:
    """Mean of a_i - b_i over the items both scored, with stderr sd(d) / sqrt(n) but at least 1 / n;
    None if < 2 shared items.

    The floor: when every item scores alike in both rows (say 20 items, none changed), sd(d) is 0, yet
    20 items cannot rule out a gain of 0.02. One changed item moves the mean by 1 / n, and a stderr
    of 1 / n is what one discordant item in n gives: the least noise a sample of n items can claim.
    """
    shared = [item for item in a if item in b]
    if len(shared) < 2:
        return None
    d = [a[item] - b[item] for item in shared]
    stderr = max(statistics.stdev(d) / math.sqrt(len(d)), 1 / len(d))
    return Difference(statistics.fmean(d), stderr, len(d), True)


def unpaired_difference(acc_a: float, se_a: float, acc_b: Sequence[float], se_b: Sequence[float]) -> Difference:
    """acc_a - mean(acc_b), with the stderrs combined as if independent."""
    variance = se_a**2 + sum(se**2 for se in se_b) / len(se_b) ** 2
    return Difference(acc_a - statistics.fmean(acc_b), math.sqrt(variance), 0, False)


def mean_of_rows(rows: Sequence[Mapping[Any, float]]) -> dict[Any, float]:
    """Per item, the mean score over the rows that scored it in all rows."""
    shared = [item for item in rows[0] if all(item in row for row in rows[1:])]
    return {item: statistics.fmean(row[item] for row in rows) for item in shared}


def target_difference(
    task: str,
    lang: str,
    others: Sequence[str],
    accuracy: Mapping[str, Mapping[str, float]],
    stderr: Mapping[str, Mapping[str, float]],
    items: Mapping[str, Mapping[str, Mapping[Any, float]]],
) -> Difference | None:
    """Calibrating on `lang` minus the mean of the `others`, on `task`: paired if every row kept items."""
    rows = [lang, *others]
    if all(items.get(row, {}).get(task) for row in rows):
        diff = paired_difference(items[lang][task], mean_of_rows([items[row][task] for row in others]))
        if diff is not None:
            return diff
    if not all(task in accuracy.get(row, {}) for row in rows):
        return None
    se = [stderr.get(row, {}).get(task, math.nan) for row in rows]
    return unpaired_difference(accuracy[lang][task], se[0], [accuracy[row][task] for row in others], se[1:])


# --- one task's scores on the target-language rows: item noise and draw noise ---------------------------


def satterthwaite(parts: Sequence[tuple[float, float]]) -> float:
    """Degrees of freedom of a sum of variance estimates [(variance, its df)] (Welch-Satterthwaite);
    parts with df inf (known noise) or variance 0 add nothing to the denominator."""
    total = math.fsum(v for v, _ in parts)
    denominator = math.fsum(v**2 / df for v, df in parts if v > 0 and math.isfinite(df))
    if not math.isfinite(total):
        return math.nan
    return total**2 / denominator if denominator > 0 else math.inf


@dataclass(frozen=True)
class Noise:
    """A contrast between rows on one task, or the mean of such contrasts over cells: the effect and its
    variance in parts, each with its degrees of freedom: items (which items the task holds) and draws
    (which calibration set each run drew). draw_df 0: no row has repeats, item noise only. A mean over
    cells may instead read its variance off the cells' own dispersion (`dispersion`: variance, df)
    when that is the larger: the cells' true effects differ, beyond what items and draws explain."""

    effect: float
    item_var: float
    item_df: float  # inf: lm-eval's stderr, taken as known
    draw_var: float
    draw_df: float
    dispersion: tuple[float, float] | None = None

    @property
    def item_only(self) -> bool:
        return self.draw_df == 0

    @property
    def parts(self) -> list[tuple[float, float]]:
        if self.dispersion is not None:
            return [self.dispersion]
        return [(self.item_var, self.item_df)] + ([(self.draw_var, self.draw_df)] if self.draw_df > 0 else [])

    @property
    def var(self) -> float:
        return math.fsum(v for v, _ in self.parts)

    @property
    def estimate(self) -> Estimate:
        """The effect, its standard error and Satterthwaite's df over the parts."""
        var = self.var
        return Estimate(self.effect, math.sqrt(var) if var >= 0 else math.nan, satterthwaite(self.parts))


@dataclass
class TaskScores:
    """One task on the target-language rows: per row the score of each of its draws (calibration runs),
    and for the item noise either the per-item scores (mean over the row's draws, on the items every
    run scored: paired) or each row's lm-eval stderr (unpaired). The draw variance is pooled over the
    rows with repeats (one calibration-draw noise for every language), with its df."""

    task: str
    draws: dict[str, list[float]]  # row -> score per draw (on the shared items when paired)
    items: dict[str, np.ndarray] | None  # row -> per-item mean over draws; None: unpaired
    item_var: dict[str, float]  # unpaired: row -> its stderr squared (mean over draws)
    draw_var: float
    draw_df: int
    diverged: list[str] = field(default_factory=list)  # runs with a non-finite score, counted as 0

    @property
    def paired(self) -> bool:
        return self.items is not None

    @property
    def n(self) -> int:
        return len(next(iter(self.items.values()))) if self.items else 0

    def contrast(self, weights: Mapping[str, float]) -> Noise:
        """sum of weight x row score (weights summing to 0: a difference of rows). Item variance: the
        paired per-item contrast's var / n, at least (1 / n)^2 (one changed item of n: the least a
        sample of n items can claim), df n - 1; unpaired: the rows' stderrs as independent (df inf).
        Draw variance: the pooled draw variance x sum of weight^2 / draws of the row."""
        effect = math.fsum(w * statistics.fmean(self.draws[row]) for row, w in weights.items())
        if self.items is not None:
            x = sum(w * self.items[row] for row, w in weights.items())
            n = len(x)
            item_var, item_df = max(float(np.var(x, ddof=1)) / n, 1 / n**2), n - 1
        else:
            item_var, item_df = math.fsum(w**2 * self.item_var[row] for row, w in weights.items()), math.inf
        draw_var = self.draw_var * math.fsum(w**2 / len(self.draws[row]) for row, w in weights.items())
        return Noise(effect, item_var, item_df, draw_var, self.draw_df)


def _score(value: Any, diverged: list[str], name: str) -> float:
    """A finite score as it is; a non-finite one is a diverged run, counted as 0 (the worst) and named."""
    if is_finite(value):
        return float(value)
    diverged.append(name)
    return 0.0


def _finite(values: list[Any], diverged: list[str], name: str) -> np.ndarray:
    """Per-item scores as an array; non-finite ones (a diverged run) count as 0 and name the run."""
    array = np.array(values, dtype=float)
    bad = ~np.isfinite(array)
    if bad.any():
        diverged.append(name)
        array[bad] = 0.0
    return array


def _results(task: str, runs: Sequence[Any], stage: str) -> list[tuple[str, dict[str, Any]]]:
    """(run name, lm-eval result of `task`) of the runs that scored it (a score of None: not scored)."""
    from lp_prune.analysis.compare.tables import read_metric

    found = []
    for run in runs:
        result = ((run.summary.downstream or {}).get(stage) or {}).get(task)
        if result and result.get(read_metric(task, result)) is not None:
            found.append((run.path.name, result))
    return found


def _item_scores(task: str, result: Mapping[str, Any]) -> dict[Any, Any] | None:
    """{item id: score} of the task's metric, or None when the run kept no per-item scores of it."""
    from lp_prune.analysis.compare.tables import read_metric

    items = result.get("items") or {}
    ids, scores = items.get("ids") or [], items.get(read_metric(task, result)) or []
    return dict(zip(ids, scores, strict=True)) if ids and len(ids) == len(scores) else None


def task_scores(task: str, rows: Mapping[str, Sequence[Any]], stage: str = "pruned") -> TaskScores | None:
    """The task's scores on `rows` ({row: its runs}, runs with summary.downstream); rows whose runs
    lack the task are left out. Paired when every run kept per-item scores of the task's metric and
    two or more items are shared by all; else unpaired on the runs' scores and lm-eval stderrs."""
    from lp_prune.analysis.compare.tables import read_metric

    results = {row: found for row, runs in rows.items() if (found := _results(task, runs, stage))}
    if not results:
        return None
    diverged: list[str] = []
    maps = {row: [_item_scores(task, result) for _, result in found] for row, found in results.items()}
    every = [m for found in maps.values() for m in found]
    shared = [i for i in every[0] if all(i in m for m in every[1:])] if all(m is not None for m in every) else []
    if len(shared) >= 2:
        arrays = {
            row: np.array(
                [_finite([m[i] for i in shared], diverged, name) for (name, _), m in zip(found, maps[row], strict=True)]
            )
            for row, found in results.items()
        }
        draws = {row: [float(a) for a in array.mean(axis=1)] for row, array in arrays.items()}
        items: dict[str, np.ndarray] | None = {row: array.mean(axis=0) for row, array in arrays.items()}
        item_var: dict[str, float] = {}
    else:
        draws, items, item_var = {}, None, {}
        for row, found in results.items():
            metrics = [(name, result, read_metric(task, result)) for name, result in found]
            draws[row] = [_score(result.get(m), diverged, name) for name, result, m in metrics]
            errors = [result.get(f"{m}_stderr") for _, result, m in metrics]
            item_var[row] = statistics.fmean(e**2 for e in errors) if all(map(is_finite, errors)) else math.nan
    sd, df = pooled_sd(list(draws.values()))
    return TaskScores(task, draws, items, item_var, sd**2 if df else 0.0, df, sorted(set(diverged)))


# --- pooling contrasts, and whether they differ ---------------------------------------------------------


def dispersion(groups: Sequence[Sequence[Noise]]) -> tuple[float, int]:
    """The sample variance of the cells' effects about their group's mean, pooled over the groups, and
    its df (cells - groups): it holds the item and draw noise and the spread of the true effects."""
    squares, df = 0.0, 0
    for group in groups:
        effects = [n.effect for n in group if is_finite(n.effect)]
        if len(effects) >= 2:
            mean = math.fsum(effects) / len(effects)
            squares += math.fsum((e - mean) ** 2 for e in effects)
            df += len(effects) - 1
    return (squares / df if df else math.nan), df


def pool(noises: Sequence[Noise], draw_df_cap: float = math.inf, spread: tuple[float, int] | None = None) -> Noise:
    """The mean of cells' contrasts, every cell counting once (the claims are about cells), and its
    variance: the larger of the model's (items and draws, sum of var / k^2, Satterthwaite's df per
    part, the draw part's df at most `draw_df_cap`: every task's draw noise is read off the same runs)
    and the cells' own dispersion / k (`spread`, else dispersion() of these cells; its df), which holds
    what the cells' true effects differ by (Hartung-Knapp's floor, with equal weights).

    Why not inverse-variance weights: they favour cells where few items changed. Measured on planted
    cells, fixed-effect weights let one unchanged cell (se 1/3000) outweigh twelve at +6 points and
    read "supported"; random-effects weights gave 8.8% false "supported" at the margin (equal weights
    6.0%) with cells varying by 3 points, over 1,000 plants."""
    kept = [n for n in noises if is_finite(n.var) and n.var > 0]
    if not kept:
        return Noise(math.nan, math.nan, 0, 0.0, 0)
    k = len(kept)
    effect = math.fsum(n.effect for n in kept) / k
    item = [(n.item_var / k**2, n.item_df) for n in kept]
    draw = [(n.draw_var / k**2, n.draw_df) for n in kept if n.draw_df > 0]
    draw_df = min(satterthwaite(draw), draw_df_cap) if draw else 0
    item_var, draw_var = math.fsum(v for v, _ in item), math.fsum(v for v, _ in draw)
    spread_var, spread_df = spread if spread is not None else dispersion([kept])
    wider = spread_df > 0 and spread_var / k > item_var + (draw_var if draw else 0.0)
    floor = (spread_var / k, spread_df) if wider else None
    return Noise(effect, item_var, satterthwaite(item), draw_var, draw_df, floor)


@dataclass(frozen=True)
class Heterogeneity:
    """Whether k estimates differ: Cochran's Q = sum w (e - pooled)^2 on df k - 1, read on chi2 when
    every noise is known (df inf), else on Welch's F (k - 1, df2), which allows for noise estimated
    with finite df (chi2 would reject too often)."""

    q: float
    df: int
    p: float
    welch_df: float  # inf: chi2

    def text(self) -> str:
        test = "chi2" if math.isinf(self.welch_df) else f"Welch's F ({self.df}, {self.welch_df:.3g})"
        return f"Cochran's Q = {self.q:.2f} on df {self.df} ({test}), p = {self.p:.3g}"


def heterogeneity(estimates: Sequence[Estimate]) -> Heterogeneity | None:
    judged = [e for e in estimates if e.judged]
    k = len(judged)
    if k < 2:
        return None
    weights = [1 / e.se**2 for e in judged]
    total = math.fsum(weights)
    pooled = math.fsum(w * e.effect for w, e in zip(weights, judged, strict=True)) / total
    q = math.fsum(w * (e.effect - pooled) ** 2 for w, e in zip(weights, judged, strict=True))
    a = math.fsum((1 - w / total) ** 2 / e.df for w, e in zip(weights, judged, strict=True) if math.isfinite(e.df))
    if a == 0:
        return Heterogeneity(q, k - 1, float(sps.chi2.sf(q, k - 1)), math.inf)
    f = q / (k - 1) / (1 + 2 * (k - 2) * a / (k**2 - 1))
    df2 = (k**2 - 1) / (3 * a)
    return Heterogeneity(q, k - 1, float(sps.f.sf(f, k - 1, df2)), df2)
