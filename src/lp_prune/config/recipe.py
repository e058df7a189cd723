"""Calibration recipes: the grammar of data.calibration_language and the typed recipe parsed from it.

    recipe = config.recipe()          # RunConfig: data.* and prune.statistics / language_weights
    recipe.counts                     # {"en": 24, "sw": 8} for "en:24,sw:8"
    recipe.label                      # "en:24,sw:8", "sw generated", "all balanced": its row in tables

A spec names the languages and their windows (see calibration_mix); the recipe adds where the text
comes from (data.source) and how the languages combine in the input statistics (prune.statistics,
prune.language_weights).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from lp_prune.errors import ConfigError
from lp_prune.languages import LANGUAGES, check_known_language


@dataclass(frozen=True)
class CalibrationRecipe:
    """What a run calibrates on, parsed once from data.calibration_language and data.nsamples."""

    spec: str  # data.calibration_language as written
    windows: tuple[tuple[str, int], ...]  # (language, calibration windows), in the spec's order
    source: str = "packaged"  # data.source
    statistics: str = "pooled"  # prune.statistics: pooled, balanced or weighted
    weights: tuple[tuple[str, float], ...] = ()  # prune.language_weights (statistics weighted)

    @classmethod
    def parse(
        cls,
        spec: str,
        nsamples: int,
        source: str = "packaged",
        statistics: str = "pooled",
        weights: Mapping[str, float] | None = None,
    ) -> CalibrationRecipe:
        """The recipe of a spec; a ConfigError (one line) when the spec is not one."""
        return cls(spec, _windows(spec, nsamples), source, statistics, tuple((weights or {}).items()))

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(lang for lang, _ in self.windows)

    @property
    def counts(self) -> dict[str, int]:
        """Calibration windows per language, in the spec's order."""
        return dict(self.windows)

    @property
    def total(self) -> int:
        """Calibration windows in all: data.nsamples, or the sum of a mix's explicit counts."""
        return sum(n for _, n in self.windows)

    @property
    def is_mix(self) -> bool:
        return len(self.windows) > 1

    def includes(self, lang: str) -> bool:
        return lang in self.languages

    def window_languages(self) -> list[str]:
        """The language of every calibration window, in the order they are drawn."""
        return [lang for lang, n in self.windows for _ in range(n)]

    def missing_weights(self) -> list[str]:
        """Statistics weighted: the calibration languages prune.language_weights gives no weight (sorted)."""
        if self.statistics != "weighted":
            return []
        return sorted(set(self.languages) - {lang for lang, _ in self.weights})

    @property
    def label(self) -> str:
        """The recipe's row in cross-run tables: the spec, then the text source unless packaged and the
        statistics rule unless pooled ('sw', 'en+sw', 'sw generated', 'all balanced')."""
        parts = [self.spec]
        parts += [self.source] if self.source != "packaged" else []
        parts += [self.statistics] if self.statistics != "pooled" else []
        return " ".join(parts)

    @property
    def path_part(self) -> str:
        """The spec as part of a file or folder name (mixes: 'en:64,sw:64' -> 'en_64_sw_64')."""
        return re.sub(r"[^\w+.-]+", "_", self.spec)


def label_languages(label: str) -> tuple[str, ...]:
    """The calibration languages of a recipe label ('all balanced' -> all seven; 'sw generated' -> sw);
    () for a label that names no recipe ('dense')."""
    try:
        return tuple(calibration_mix(label.split(" ")[0], 1000))
    except ConfigError:
        return ()


@functools.lru_cache(maxsize=256)
def _windows(spec: str, nsamples: int) -> tuple[tuple[str, int], ...]:
    return tuple(calibration_mix(spec, nsamples).items())


def calibration_mix(spec: str, nsamples: int) -> dict[str, int]:
    """Windows per language for a calibration spec, in the spec's order.

    "en"                 -> {en: nsamples}
    "en+sw"              -> nsamples split evenly (the first languages take the remainder)
    "all"                -> all seven languages, split evenly
    "en:64,sw:64"        -> exactly these counts (they take precedence over data.nsamples)
    "en:0.4,zh:0.2,..."  -> proportions of data.nsamples (see proportional_counts); they must sum
                            to 1 (within 1e-6), and counts and proportions cannot be mixed
    """
    spec = spec.strip()
    if ":" in spec:
        values = _mix_values(spec)
        if all(isinstance(v, int) for v in values.values()):
            return values  # type: ignore[return-value]
        total = sum(values.values())
        if abs(total - 1.0) > MIX_SUM_TOLERANCE:
            raise ConfigError(
                f"data.calibration_language '{spec}': proportions sum to {total:g}, not 1 (write counts such as en:64 "
                "for unnormalised weights)"
            )
        _check_enough_samples(nsamples, len(values), spec)
        return proportional_counts(values, nsamples)
    langs = list(LANGUAGES) if spec == "all" else [lang.strip() for lang in spec.split("+")]
    for lang in langs:
        check_known_language(lang, "data.calibration_language")
    if len(set(langs)) < len(langs):
        raise ConfigError(f"data.calibration_language '{spec}' names a language twice")
    _check_enough_samples(nsamples, len(langs), spec)
    share, extra = divmod(nsamples, len(langs))
    return {lang: share + (i < extra) for i, lang in enumerate(langs)}


MIX_SUM_TOLERANCE = 1e-6  # proportions of a weighted mix must sum to 1 within this
_COUNT = re.compile(r"^\d+$")
_PROPORTION = re.compile(r"^(\d+\.\d*|\.\d+)$")  # a decimal point marks a proportion: 0.4, .4, 1.0


def _mix_values(spec: str) -> dict[str, int | float]:
    """'en:64,sw:16' -> {en: 64, sw: 16}; 'en:0.4,sw:0.6' -> {en: 0.4, sw: 0.6}; one kind only."""
    values: dict[str, int | float] = {}
    for part in spec.split(","):
        lang, _, raw = (x.strip() for x in part.strip().partition(":"))
        check_known_language(lang, "data.calibration_language")
        if lang in values:
            raise ConfigError(f"data.calibration_language '{spec}' names '{lang}' twice")
        if _COUNT.match(raw) and int(raw) >= 1:
            values[lang] = int(raw)
        elif _PROPORTION.match(raw) and 0.0 < float(raw) <= 1.0:
            values[lang] = float(raw)
        else:
            raise ConfigError(
                f"data.calibration_language '{spec}': '{part.strip()}' needs a positive count (en:64) "
                "or a proportion in (0, 1] (en:0.4)"
            )
    if len({type(v) for v in values.values()}) > 1:
        raise ConfigError(
            f"data.calibration_language '{spec}' mixes counts and proportions: write all as counts (en:64) "
            "or all as proportions (en:0.4)"
        )
    return values


def proportional_counts(proportions: dict[str, float], nsamples: int) -> dict[str, int]:
    """Largest-remainder rounding of nsamples x p per language, every language at least one window.

    Each language gets floor(nsamples x p); the windows left over go one each to the largest
    remainders (ties: the earlier language of the spec). A language rounded to 0 then gets one
    window from the language whose count exceeds its quota nsamples x p the most (among those with
    two or more). The counts always sum to nsamples; needs nsamples >= the number of languages.
    """
    total = sum(proportions.values())  # 1 within MIX_SUM_TOLERANCE; dividing keeps sum(quotas) == nsamples
    quotas = {lang: nsamples * p / total for lang, p in proportions.items()}
    counts = {lang: math.floor(q) for lang, q in quotas.items()}
    order = list(quotas)
    by_remainder = sorted(order, key=lambda lang: (-(quotas[lang] - counts[lang]), order.index(lang)))
    for lang in by_remainder[: nsamples - sum(counts.values())]:
        counts[lang] += 1
    for lang in order:
        if counts[lang] == 0:
            donors = [d for d in order if counts[d] >= 2]
            donor = max(donors, key=lambda d: (counts[d] - quotas[d], -order.index(d)))
            counts[donor] -= 1
            counts[lang] = 1
    return counts


def _check_enough_samples(nsamples: int, n_languages: int, spec: str) -> None:
    if nsamples < n_languages:
        raise ConfigError(f"data.nsamples {nsamples} is fewer than the {n_languages} languages of '{spec}'")
