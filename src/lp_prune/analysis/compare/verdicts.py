"""Verdicts on the study's claims: the `Finding` record, the four verdicts, the noise a claim is
judged against, and the per-language decision rules every claim about "each language" shares.

    floor = repeat_floor([[10.1, 10.4], [12.0, 11.8, 12.1]])      # pooled SD and its df (3 - 1 + 2 - 1 = 2)
    e = contrast([10.1, 10.4], [[12.0, 11.8]], floor, higher_is_better=False)   # an Estimate, t with df 2
    cell = versus_each("en", [10.1, 10.4], {"sw": [12.0, 11.8], "de": [...]}, floor, higher_is_better=False)
    verdict, decision = decide_languages({"en": cell, ...}, rule=GENERALLY)

The noise of a number is its spread over repeats of one recipe: distinct calibration draws. A floor
pooled over several rows says so, with its degrees of freedom; a row with no repeats of its own never
makes a claim "supported". Decisions are Student's t at the floor's df (stats.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lp_prune.analysis.compare.stats import ALPHA, Estimate, holm, is_finite, pooled_sd

# The four verdicts (DESIGN: a verdict is the effect against its noise).
SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
NO_DATA = "no data"
DOES_NOT_APPLY = "does not apply"  # the claim is about something the method does not do (masks of quantization)


@dataclass
class Finding:
    claim: str  # "C1" ... "C8", "Q1"
    verdict: str  # SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NO_DATA or DOES_NOT_APPLY
    evidence: str  # the effect, the noise it is judged against, the decision
    details: dict[str, Any] = field(default_factory=dict)
    statement: str = ""  # the claim's statement, set from the claims table (findings.CLAIMS)

    def line(self) -> str:
        return f"{self.claim} {self.statement} Verdict: {self.verdict}. {self.evidence}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Margins:
    """The margins of the "no difference" claims: a difference smaller than this is no difference worth
    the name (compare's --c3_margin, --c5_margin, --c7_margin)."""

    c3: float = 0.02  # accuracy (two points)
    c5: float = 0.005  # relative error of the language-agnostic part
    c7: float = 0.02  # perplexity, relative (2%)


DEFAULT_MARGINS = Margins()


EVERY, GENERALLY = "every", "generally"  # a claim that must hold in every language, or in most of them


@dataclass(frozen=True)
class Floor:
    """Pooled standard deviation of a number over the repeats (distinct draws) of each row."""

    sd: float
    df: int  # repeats minus rows: 0 when no row has two draws
    rows: int = 0  # rows with repeats that it pools

    @property
    def exists(self) -> bool:
        return self.df > 0 and is_finite(self.sd) and self.sd > 0

    def text(self, unit: str = "", scale: float = 1.0) -> str:
        if self.df > 0 and self.sd == 0:
            return "repeats identical to the last digit (SD 0), so no noise floor"
        if not self.exists:
            return "no repeats (distinct calibration draws) of any row, so no noise floor"
        pooled = f", pooled over {self.rows} rows" if self.rows > 1 else ""
        return f"repeat SD {scale * self.sd:.3g}{unit} (df {self.df}{pooled})"


def repeat_floor(groups: Iterable[Sequence[float]]) -> Floor:
    """Pooled SD over groups (one group per row: its draws' finite values); groups of one add nothing."""
    finite = [[v for v in group if is_finite(v)] for group in groups]
    sd, df = pooled_sd(finite)
    return Floor(sd, df, sum(len(values) >= 2 for values in finite))


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def contrast(own: Sequence[float], others: Sequence[Sequence[float]], floor: Floor, higher_is_better: bool) -> Estimate:
    """The mean of `own`'s draws against the mean of the other rows' means (positive: own is better)."""
    return group_contrast([own], others, floor, higher_is_better)


def group_contrast(
    rows: Sequence[Sequence[float]], others: Sequence[Sequence[float]], floor: Floor, higher_is_better: bool
) -> Estimate:
    """The mean of `rows`' means against the mean of `others`' means, every row weighted alike and
    each row's mean with the floor's SD over the square root of its draws (positive: `rows` better).
    No noise (se NaN) without a floor, or when a row has no repeats of its own."""
    sign = 1.0 if higher_is_better else -1.0
    effect = sign * (_mean([_mean(row) for row in rows]) - _mean([_mean(row) for row in others]))
    if not floor.exists or any(len(row) < 2 for row in (*rows, *others)):
        return Estimate(effect, math.nan, 0)
    variance = floor.sd**2 * sum(sum(1 / len(row) for row in group) / len(group) ** 2 for group in (rows, others))
    return Estimate(effect, math.sqrt(variance), floor.df)


@dataclass
class LanguageCell:
    """One language of a claim about each language: own-language calibration against the others."""

    language: str
    estimate: Estimate  # against the closest competitor (or the others' mean)
    versus: str  # that competitor's name, or "the others"
    p_holds: float  # p of "own better than every competitor" (intersection-union: the largest p)
    p_fails: float  # p of "some competitor better than own" (Bonferroni over the competitors)
    notes: list[str] = field(default_factory=list)  # diverged runs, rows without repeats
    outcome: str = ""  # set by decide_languages: "holds", "fails" or "undecided"

    def to_dict(self) -> dict[str, Any]:
        low, high = self.estimate.interval()
        return {
            "versus": self.versus,
            "effect": self.estimate.effect,
            "se": self.estimate.se,
            "df": self.estimate.df,
            "ci": [low, high],
            "p_holds": self.p_holds,
            "p_fails": self.p_fails,
            "detectable": self.estimate.detectable(),
            "outcome": self.outcome,
            "notes": self.notes,
        }


def versus_each(
    language: str,
    own: Sequence[float],
    others: Mapping[str, Sequence[float]],
    floor: Floor,
    higher_is_better: bool,
    diverged: Mapping[str, list[str]] | None = None,
) -> LanguageCell:
    """Own row against every other row, each by its own t-test at the floor's df: own holds when it
    beats every one (the largest p decides: an intersection-union test needs no correction), and
    fails when some row beats it (the smallest p, Bonferroni over the rows). `diverged`: per row, the
    runs whose value is not finite; a diverged own row fails, a diverged competitor cannot win."""
    diverged = {row: names for row, names in (diverged or {}).items() if names}
    notes = [f"{row} diverged ({', '.join(names)})" for row, names in diverged.items()]
    if language in diverged:
        return LanguageCell(language, Estimate(-math.inf, math.nan, 0), "its own draws", 1.0, 0.0, notes)
    rivals = {row: values for row, values in others.items() if row not in diverged and values}
    if not rivals or not own:
        return LanguageCell(language, Estimate(math.nan, math.nan, 0), "-", math.nan, math.nan, notes)
    estimates = {row: contrast(own, [values], floor, higher_is_better) for row, values in rivals.items()}
    closest = min(estimates, key=lambda row: estimates[row].effect)
    p_holds = max(_p_better(e) for e in estimates.values())
    p_fails = min(1.0, len(estimates) * min(_p_worse(e) for e in estimates.values()))
    notes += [f"{row} has no repeats of its own" for row, v in {language: own, **rivals}.items() if len(v) < 2]
    return LanguageCell(language, estimates[closest], closest, p_holds, p_fails, notes)


def versus_mean(
    language: str, own: Sequence[float], others: Sequence[Sequence[float]], floor: Floor, higher_is_better: bool
) -> LanguageCell:
    """Own row against the mean of the other rows (one t-test at the floor's df)."""
    estimate = contrast(own, others, floor, higher_is_better)
    notes = ["a row has no repeats of its own"] if any(len(row) < 2 for row in (own, *others)) else []
    return LanguageCell(language, estimate, "the others", _p_better(estimate), _p_worse(estimate), notes)


def _p_better(e: Estimate) -> float:
    """Two-sided p when the effect points the claim's way, else 1 (the two-sided test's half)."""
    return e.p_two_sided() if e.judged and e.effect > 0 else 1.0


def _p_worse(e: Estimate) -> float:
    return e.p_two_sided() if e.judged and e.effect < 0 else 1.0


def decide_languages(cells: Mapping[str, LanguageCell], rule: str) -> tuple[str, str]:
    """The verdict of a claim about each language, and the decision in words.

    EVERY: supported when every language holds at ALPHA (an intersection-union test: no correction);
    GENERALLY: supported when more than half the languages hold, each confirmed with Holm's correction
    over the languages (the ones that do not are named as exceptions). Either way: not supported when
    the languages that fail (Holm over the languages) rule the claim out (any for EVERY, half or more
    for GENERALLY); otherwise inconclusive, with the effect each open language could have detected."""
    if not cells:
        return NO_DATA, "no language to judge"
    languages = list(cells)
    if rule == EVERY:
        holds = [cells[lang].p_holds < ALPHA for lang in languages]
    else:
        holds = holm([cells[lang].p_holds for lang in languages])
    fails = holm([cells[lang].p_fails for lang in languages])
    for lang, held, failed in zip(languages, holds, fails, strict=True):
        cells[lang].outcome = "holds" if held else "fails" if failed else "undecided"
    held = [lang for lang in languages if cells[lang].outcome == "holds"]
    failed = [lang for lang in languages if cells[lang].outcome == "fails"]
    k, n = len(held), len(languages)
    exceptions = [lang for lang in languages if lang not in held]
    named = f"; exceptions: {', '.join(_exception(cells[lang]) for lang in exceptions)}" if exceptions else ""
    test = (
        f"each language at alpha {ALPHA:g}, two-sided t (every language must hold: intersection-union, no correction)"
        if rule == EVERY
        else f"each language at alpha {ALPHA:g}, two-sided t, Holm over the {n} languages"
    )
    if (rule == EVERY and k == n) or (rule == GENERALLY and k > n / 2):
        return SUPPORTED, f"holds in {k} of {n} languages ({test}){named}"
    if (rule == EVERY and failed) or (rule == GENERALLY and len(failed) >= n / 2):
        return NOT_SUPPORTED, f"fails in {len(failed)} of {n} ({', '.join(failed)}; {test}); holds in {k}"
    return INCONCLUSIVE, f"holds in {k} of {n}, fails in {len(failed)} ({test}){named}"


def _exception(cell: LanguageCell) -> str:
    detail = cell.outcome
    if cell.outcome == "undecided" and is_finite(cell.estimate.detectable()):
        detail += f", detects {cell.estimate.detectable():.3g} or more at 80% power"
    if cell.notes:
        detail += f"; {'; '.join(cell.notes)}"
    return f"{cell.language} ({detail})"
