"""The statistics every verdict uses: an effect with its standard error and degrees of freedom, and
the three questions asked of it.

    e = Estimate(effect=0.04, se=0.01, df=7)   # positive: the claim's direction
    e.direction()                              # "better" / "worse" / "within noise" (two-sided t, ALPHA)
    e.equivalence(margin=0.02)                 # "equivalent" / "different" / "cannot tell" (two one-sided tests)
    e.below(0.02)                              # True when the one-sided upper bound lies below 0.02
    holm([0.01, 0.04, 0.03])                   # Holm's rejections (family-wise error control)

Student's t with the noise's own degrees of freedom throughout (a floor of 7 draws is not a normal
one); df = inf only where the noise is known (item-level binomial noise over thousands of items).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps

ALPHA = 0.05  # two-sided tests and 95% intervals; one-sided bounds and TOST at ALPHA as well
POWER = 0.8  # the power the minimum detectable effect is quoted at

BETTER, WORSE, WITHIN_NOISE, NO_NOISE = "better", "worse", "within noise", "no floor"
EQUIVALENT, DIFFERENT, CANNOT_TELL = "equivalent", "different", "cannot tell"


def is_finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def t_quantile(p: float, df: float) -> float:
    return float(sps.norm.ppf(p)) if math.isinf(df) else float(sps.t.ppf(p, df))


@dataclass(frozen=True)
class Estimate:
    """An effect (signed: positive is the claim's direction), its standard error and that error's df."""

    effect: float
    se: float  # NaN: no noise to judge against
    df: float  # 0: no noise; math.inf: known (normal) noise

    @property
    def judged(self) -> bool:
        return is_finite(self.effect) and is_finite(self.se) and self.se > 0 and self.df > 0

    @property
    def t(self) -> float:
        return self.effect / self.se if self.judged else math.nan

    def p_two_sided(self) -> float:
        if not self.judged:
            return math.nan
        return float(2 * (sps.norm.sf(abs(self.t)) if math.isinf(self.df) else sps.t.sf(abs(self.t), self.df)))

    def p_greater(self, bound: float = 0.0) -> float:
        """One-sided p of 'effect > bound'."""
        if not self.judged:
            return math.nan
        t = (self.effect - bound) / self.se
        return float(sps.norm.sf(t) if math.isinf(self.df) else sps.t.sf(t, self.df))

    def p_less(self, bound: float = 0.0) -> float:
        """One-sided p of 'effect < bound'."""
        if not self.judged:
            return math.nan
        t = (self.effect - bound) / self.se
        return float(sps.norm.cdf(t) if math.isinf(self.df) else sps.t.cdf(t, self.df))

    def interval(self, level: float = 1 - ALPHA) -> tuple[float, float]:
        if not self.judged:
            return math.nan, math.nan
        half = t_quantile(0.5 + level / 2, self.df) * self.se
        return self.effect - half, self.effect + half

    def direction(self, alpha: float = ALPHA) -> str:
        """better / worse beyond the two-sided level, else within noise; 'no floor' without noise."""
        if not self.judged:
            return NO_NOISE
        if self.p_two_sided() >= alpha:
            return WITHIN_NOISE
        return BETTER if self.effect > 0 else WORSE

    def equivalence(self, margin: float, alpha: float = ALPHA) -> str:
        """Two one-sided tests: 'equivalent' when both |effect| < margin tests reject at alpha (the
        (1 - 2 alpha) interval lies inside +-margin); 'different' when |effect| > margin is shown at
        alpha (the interval lies wholly beyond one side of the margin); else 'cannot tell'."""
        if not self.judged:
            return CANNOT_TELL
        if max(self.p_greater(-margin), self.p_less(margin)) < alpha:
            return EQUIVALENT
        if min(self.p_greater(margin), self.p_less(-margin)) < alpha:
            return DIFFERENT
        return CANNOT_TELL

    def confirmable_margin(self, alpha: float = ALPHA) -> float:
        """The smallest margin these data would have confirmed as equivalent (TOST at alpha)."""
        low, high = self.interval(1 - 2 * alpha)
        return max(abs(low), abs(high))

    def below(self, bound: float, alpha: float = ALPHA) -> bool:
        """Whether 'effect < bound' is shown at one-sided alpha (non-superiority)."""
        return self.judged and self.p_less(bound) < alpha

    def detectable(self, alpha: float = ALPHA, power: float = POWER) -> float:
        """The smallest true effect a two-sided test at alpha detects with `power`, at this se and df."""
        if not (is_finite(self.se) and self.df > 0):
            return math.nan
        return (t_quantile(1 - alpha / 2, self.df) + t_quantile(power, self.df)) * self.se

    def text(self, scale: float = 1.0, unit: str = "", digits: int = 3) -> str:
        """'+0.042 [0.030, 0.054] (t, df 7)': the effect, its 95% interval and the test's df."""
        value = f"{scale * self.effect:+.{digits}f}{unit}"
        if not self.judged:
            return f"{value} (no noise to judge against)"
        low, high = self.interval()
        df = "normal" if math.isinf(self.df) else f"t, df {self.df:.3g}"
        return f"{value} [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}] ({df})"


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Holm's step-down rejections for a family of p-values (NaN: never rejected, still counted): the
    k-th smallest (k = 0, 1, ...) is rejected while p <= alpha / (m - k). statsmodels' multipletests
    decides the same but runs a full garbage collection on every call (most of a second with torch loaded)."""
    finite = [p if is_finite(p) else 1.0 for p in pvalues]
    reject = [False] * len(finite)
    for k, index in enumerate(sorted(range(len(finite)), key=finite.__getitem__)):
        if finite[index] > alpha / (len(finite) - k):
            break
        reject[index] = True
    return reject


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """Pooled SD over groups of repeats and its degrees of freedom (n - groups); groups of one add nothing."""
    squares, df = 0.0, 0
    for values in groups:
        if len(values) >= 2:
            mean = math.fsum(values) / len(values)
            squares += math.fsum((v - mean) ** 2 for v in values)
            df += len(values) - 1
    return (math.sqrt(squares / df) if df else math.nan), df


def mean_estimate(values: Sequence[float]) -> Estimate:
    """The mean of independent values with its standard error (sd / sqrt(n), df n - 1)."""
    n = len(values)
    mean = math.fsum(values) / n if n else math.nan
    if n < 2:
        return Estimate(mean, math.nan, 0)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return Estimate(mean, sd / math.sqrt(n), n - 1)
