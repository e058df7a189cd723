"""Which rows of a comparison are calibration *languages*, and the repeats behind every row.

A run (or an analysed run of analysis.json) is a row of its recipe ('sw', 'sw mc4', 'en+sw', 'all
balanced', 'sw generated'); runs of one recipe with different seeds are its repeats. A target-language
row calibrates on one language whatever the text source; mixes, 'all', generated text and other
statistics rules are recipes, never "the target language". When target-language rows come from
several sources, the claims read the source with the most languages (the others are named).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from lp_prune.analysis.compare.stats import is_finite
from lp_prune.analysis.compare.verdicts import Floor, repeat_floor
from lp_prune.languages import LANGUAGES
from lp_prune.pruning.registry import capabilities_named


class Row(Protocol):
    @property
    def recipe(self) -> str: ...

    @property
    def target_language(self) -> str | None: ...

    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class AnalysedRun:
    """One run of analysis.json's `runs`, as the claims read it."""

    key: str
    setting: str
    recipe: str
    target_language: str | None
    source: str
    analysed: bool
    method: str = ""
    structured: bool | None = None  # whether its method removes whole structures; None: not recorded

    @property
    def removes_structures(self) -> bool:
        """Whether the run's method removes whole channels and heads (as recorded, else as registered here)."""
        return capabilities_named(self.method).structured if self.structured is None else self.structured

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> AnalysedRun:
        language = entry.get("calibration_language", "")
        return cls(
            key=entry["key"],
            setting=entry.get("setting", ""),
            recipe=entry.get("recipe", language),
            target_language=entry.get("target_language", language if language in LANGUAGES else None),
            source=entry.get("source", "packaged"),
            analysed=bool(entry.get("analysed", True)),
            method=entry.get("method", ""),
            structured=entry.get("structured"),
        )

    @classmethod
    def from_run(cls, run: Any, analysed: bool) -> AnalysedRun:
        """A compared run (analysis.Run) that the analysis holds, labelled as compare labels it."""
        labels = (run.setting, run.recipe, run.target_language, run.source)
        method = run.summary.method
        return cls(run.path.name, *labels, analysed=analysed, method=method, structured=run.capabilities.structured)


@dataclass
class TargetRows:
    """The target-language rows of one setting: per language its runs (repeats), in LANGUAGES order."""

    rows: dict[str, list[Any]]
    source: str | None
    left_out: list[str]  # target-language recipes of other sources

    def languages(self) -> list[str]:
        return list(self.rows)

    def note(self) -> str:
        """What a claim's evidence says about the rows it read ('' for packaged text only)."""
        parts = []
        if self.source and self.source != "packaged":
            parts.append(f"Calibration text: {self.source}.")
        if self.left_out:
            parts.append(f"Rows of other text sources left out: {', '.join(self.left_out)}.")
        return " ".join(parts)


def target_rows(runs: Iterable[Row]) -> TargetRows:
    by_source: dict[str, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.target_language is not None:
            by_source[run.source][run.target_language].append(run)
    if not by_source:
        return TargetRows({}, None, [])
    source = max(by_source, key=lambda s: (len(by_source[s]), s == "packaged"))
    rows = {lang: by_source[source][lang] for lang in LANGUAGES if lang in by_source[source]}
    others = [group for s, langs in by_source.items() if s != source for group in langs.values()]
    left_out = sorted({run.recipe for group in others for run in group})
    return TargetRows(rows, source, left_out)


def target_floor(targets: TargetRows, value: Callable[[Any], float | None]) -> Floor:
    """The repeat floor of `value` pooled over the target-language rows only (a mix's spread is
    another recipe's noise); diverged draws add nothing to it."""
    return repeat_floor(row_values(runs, value)[0] for runs in targets.rows.values())


def row_values(runs: Sequence[Any], value: Callable[[Any], float | None]) -> tuple[list[float], list[str]]:
    """A row's finite values over its draws, and the names of the draws whose value is not finite
    (a diverged run: NaN, inf or null where a number should be). `value` returns None for "not
    measured" and a non-finite float for "diverged"."""
    finite, diverged = [], []
    for run in runs:
        v = value(run)
        if v is None:
            continue
        if is_finite(v):
            finite.append(float(v))
        else:
            diverged.append(run_name(run))
    return finite, diverged


def values_of(runs: Sequence[Any], value: Callable[[Any], float | None]) -> list[float]:
    return row_values(runs, value)[0]


def run_name(run: Any) -> str:
    """A run's name in evidence: its folder (compare's runs) or its key (analysis.json's)."""
    path = getattr(run, "path", None)
    return path.name if path is not None else str(getattr(run, "key", run))
