"""Verdicts on the study's claims: the `Finding` record, the four verdicts, and the noise a claim is
judged against: the spread of a number over repeats of one recipe
(calibration draws with different seeds), pooled over the recipes that have repeats, and the
contrast of one row against others measured in that noise.

    floor = repeat_floor([[10.1, 10.4], [12.0, 11.8, 12.1]])    # pooled SD, its degrees of freedom
    c = contrast(own=[10.1, 10.4], others=[[12.0, 11.8]], floor=floor, higher_is_better=False)
    c.outcome                                                   # "better", "worse", "within noise", "no floor"

With no repeats there is no floor, and a contrast has no outcome beyond "no floor": the claims that
read it are then at most inconclusive.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lp_prune.analysis.compare.differences import Z, is_finite

# The four verdicts (DESIGN: a verdict is the effect against its noise).
SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
NO_DATA = "no data"
DOES_NOT_APPLY = "does not apply"  # the claim is about something the method does not do (masks of quantization)

NO_FLOOR = "no floor"

STATEMENTS = {
    "C1": "Calibrating on the target language gives the lowest perplexity on that language.",
    "C2": "Calibrating on the target language gives the highest SNR on that language.",
    "C3": "Target-language calibration does not consistently improve downstream accuracy on that language.",
    "C4": "o_proj and down_proj have the least consistent masks across calibration languages, especially in "
    "early layers, while q/k/v of the first layer stay consistent.",
    "C5": "Target-language calibration lowers the error on the language-specific part only: the error on "
    "language-agnostic features is similar whatever the calibration language.",
    "C6": "Pruning shifts the activation probabilities of low-probability language-specific neurons.",
    "C7": "Calibrating on a linguistically similar or an outlier language gives no consistent advantage.",
    "C8": "Under structured pruning, calibrating on a language removes fewer of its language-specific (LAPE) "
    "neurons than calibrating on the other languages does.",
    "Q1": "Does the calibration-language effect on downstream accuracy depend on the task type?",
}


@dataclass
class Finding:
    claim: str  # "C1" ... "C8"
    verdict: str  # SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NO_DATA or DOES_NOT_APPLY
    evidence: str  # the effect, the noise it is judged against, the decision
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def statement(self) -> str:
        return STATEMENTS[self.claim]

    def line(self) -> str:
        return f"{self.claim} {self.statement} Verdict: {self.verdict}. {self.evidence}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "statement": self.statement}


POWER_Z = 2.8  # z(0.975) + z(0.8): a true effect this many stderrs large is detected 80% of the time


@dataclass(frozen=True)
class Floor:
    """Pooled standard deviation of a number over the repeats of each recipe."""

    sd: float
    df: int  # repeats minus recipes: 0 when no recipe has two runs

    @property
    def exists(self) -> bool:
        return self.df > 0 and is_finite(self.sd)

    def text(self, unit: str = "") -> str:
        if not self.exists:
            return "no repeats of one recipe, so no noise floor"
        return f"repeat SD {self.sd:.3g}{unit} (df {self.df})"


def repeat_floor(groups: Iterable[Sequence[float]]) -> Floor:
    """Pooled SD over groups (one group per recipe: its repeats' values); groups of one add nothing."""
    squares, df = 0.0, 0
    for group in groups:
        values = [v for v in group if is_finite(v)]
        if len(values) >= 2:
            squares += statistics.variance(values) * (len(values) - 1)
            df += len(values) - 1
    return Floor(math.sqrt(squares / df) if df else math.nan, df)


@dataclass(frozen=True)
class Contrast:
    """own minus others, signed so that positive means own is better; its stderr from the floor."""

    effect: float
    se: float  # NaN without a floor

    @property
    def outcome(self) -> str:
        if not is_finite(self.se):
            return NO_FLOOR
        if self.effect > Z * self.se:
            return "better"
        return "worse" if self.effect < -Z * self.se else "within noise"

    @property
    def detectable(self) -> float:
        """The smallest true effect this contrast detects with 80% power (NaN without a floor)."""
        return POWER_Z * self.se

    def text(self, unit: str = "", digits: int = 3) -> str:
        if not is_finite(self.se):
            return f"{self.effect:+.{digits}f}{unit} (no floor)"
        return f"{self.effect:+.{digits}f}{unit} ± {self.se:.{digits}f} ({self.outcome})"


def contrast(own: Sequence[float], others: Sequence[Sequence[float]], floor: Floor, higher_is_better: bool) -> Contrast:
    """Mean of `own`'s repeats against the mean of the other rows' means; each row's mean has the
    floor's SD over the square root of its repeats."""
    sign = 1.0 if higher_is_better else -1.0
    effect = sign * (statistics.fmean(own) - statistics.fmean(statistics.fmean(row) for row in others))
    if not floor.exists:
        return Contrast(effect, math.nan)
    variance = floor.sd**2 * (1 / len(own) + sum(1 / len(row) for row in others) / len(others) ** 2)
    return Contrast(effect, math.sqrt(variance))


def combine(outcomes: Sequence[str]) -> str:
    """One verdict from per-language outcomes of a claim that every language should be 'better':
    all better: supported; any worse: not supported; otherwise (within noise, no floor): inconclusive."""
    if not outcomes:
        return NO_DATA
    if all(o == "better" for o in outcomes):
        return SUPPORTED
    return NOT_SUPPORTED if "worse" in outcomes else INCONCLUSIVE
