"""How much data a verdict needs: the sizes at which a claim's test detects a stated effect with 80%
power, from a pilot's noise. Pure functions over numbers; the study's plan reads them.

    detectable_effect(se=0.01, df=7)                  # the smallest true effect found 80% of the time
    draws_for(effect=0.02, sd=0.015, rows=7)          # calibration draws per row for a C1-style contrast
    items_for(effect=0.03, item_sd=0.45, cells=12)    # items per cell for C3's pooled estimate

The tests are the verdicts' own (stats.py): two-sided t at ALPHA with the noise's degrees of
freedom, so a plan's numbers are the ones the engine will judge with. Power is the noncentral-t
probability of rejecting (scipy.stats.nct), not the normal approximation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scipy import stats as sps

from lp_prune.analysis.compare.stats import ALPHA, POWER

MAX_SIZE = 1_000_000  # a plan that needs more than this is reported as out of reach


def power(effect: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """The probability that a two-sided t-test at `alpha` rejects when the true effect is `effect` and
    the estimate's standard error is `se` with `df` degrees of freedom."""
    if not (se > 0 and df > 0):
        return 0.0
    shift = effect / se
    if math.isinf(df):
        crit = sps.norm.ppf(1 - alpha / 2)
        return float(sps.norm.sf(crit - shift) + sps.norm.cdf(-crit - shift))
    crit = sps.t.ppf(1 - alpha / 2, df)
    return float(sps.nct.sf(crit, df, shift) + sps.nct.cdf(-crit, df, shift))


def detectable_effect(se: float, df: float, alpha: float = ALPHA, target: float = POWER) -> float:
    """The smallest true effect the test detects with probability `target` (bisection on `power`)."""
    if not (se > 0 and df > 0):
        return math.nan
    low, high = 0.0, 20.0 * se
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if power(middle, se, df, alpha) < target else (low, middle)
    return high


def smallest_size(enough: Callable[[int], bool], limit: int = MAX_SIZE) -> int | None:
    """The smallest n >= 2 for which enough(n) holds (enough is monotone in n), or None when even
    `limit` is not enough."""
    if not enough(limit):
        return None
    low, high = 1, min(2, limit)
    while not enough(high):
        low, high = high, min(2 * high, limit)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def draws_for(effect: float, sd: float, rows: int, alpha: float = ALPHA, target: float = POWER) -> int | None:
    """Calibration draws per row so that one row against another (both with that many draws, the
    floor pooled over `rows` single-language rows: df rows x (draws - 1)) detects `effect` with
    `target` power, as the C1/C2 contrasts do."""

    def enough(draws: int) -> bool:
        return power(effect, sd * math.sqrt(2 / draws), rows * (draws - 1), alpha) >= target

    return smallest_size(enough)


def items_for(
    effect: float,
    item_sd: float,
    cells: int = 1,
    draw_var: float = 0.0,
    alpha: float = ALPHA,
    target: float = POWER,
) -> int | None:
    """Items per (task, language) cell so that the mean over `cells` cells of a paired per-item
    difference (item SD `item_sd`; `draw_var` the variance a cell's effect adds from the calibration
    draws, which more items do not shrink) detects `effect` with `target` power, as C3's pooled
    estimate does (item noise with df items - 1 per cell, taken as normal once the items are many)."""

    def enough(items: int) -> bool:
        se = math.sqrt((item_sd**2 / items + draw_var) / cells)
        return power(effect, se, math.inf if items * cells > 1000 else cells * (items - 1), alpha) >= target

    if draw_var > 0 and power(effect, math.sqrt(draw_var / cells), math.inf, alpha) < target:
        return None  # the draws alone hide the effect: more items cannot help, more draws or cells can
    return smallest_size(enough)
