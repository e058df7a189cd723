"""Downstream differences between calibrations, item by item: the paired difference of per-item
scores (lm-eval's per-sample results kept by the runs), else the unpaired difference of accuracies
with their stderrs combined. A difference beyond Z stderrs is a gain or a loss.

Used by claim C3 (findings.py) and by the recipes per target language (recipes.py).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
