"""Calibration recipes per target language (the language-aware measurement): for each target language
with a target-language run, that run and every recipe that includes the target (mixes, 'all' under any
statistics rule, generated text), judged on the target's perplexity, the other languages' geometric
mean, and the target's downstream task; their verdict lines and report table.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lp_prune.analysis.compare.differences import Difference, Z, is_finite, target_difference
from lp_prune.config import LANGUAGES, REFERENCE_SETS, calibration_mix
from lp_prune.errors import ConfigError

KEEP_TARGET = 0.05  # recipes: the target's perplexity within 5% of target-language calibration ...
CUT_OTHERS = 0.10  # ... while the other languages' geometric-mean perplexity falls by 10% or more


@dataclass
class RecipeRow:
    """One calibration recipe judged for one target language against calibrating on that language."""

    target: str
    recipe: str
    target_perplexity: float
    others_perplexity: float  # geometric mean over the other evaluated languages
    target_change: float  # relative to target-language calibration: 0.03 = 3% higher
    others_change: float
    task: str | None
    accuracy: float
    stderr: float
    vs_target: Difference | None  # downstream difference to target-language calibration (paired if possible)

    @property
    def keeps_target_cuts_others(self) -> bool:
        return self.target_change <= KEEP_TARGET and self.others_change <= -CUT_OTHERS

    @property
    def beats_target_downstream(self) -> bool:
        return self.vs_target is not None and self.vs_target.outcome == "gain"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["vs_target"] = self.vs_target.text() if self.vs_target else None
        out["keeps_target_cuts_others"] = self.keeps_target_cuts_others
        out["beats_target_downstream"] = self.beats_target_downstream
        return out


def recipe_languages(recipe: str) -> set[str]:
    """The calibration languages of a recipe label ('all balanced' -> all seven; 'sw generated' -> {sw})."""
    try:
        return set(calibration_mix(recipe.split(" ")[0], 1000))
    except ConfigError:
        return set()


def recipe_rows(
    perplexity: Mapping[str, Mapping[str, float]],
    accuracy: Mapping[str, Mapping[str, float]],
    stderr: Mapping[str, Mapping[str, float]],
    items: Mapping[str, Mapping[str, Mapping[Any, float]]],
    task_language: Callable[[str], str | None],
) -> list[RecipeRow]:
    """For each target language with a target-language run: that run and every recipe that includes the
    target (mixes, 'all' under any statistics rule, generated text), on the target's perplexity, the
    others' geometric mean, and the target's downstream task (the proxy when there is one)."""
    rows: list[RecipeRow] = []
    for target in LANGUAGES:
        reference = perplexity.get(target)
        if not reference or target not in reference:
            continue
        others = [lang for lang in reference if lang != target and lang not in REFERENCE_SETS]
        task = _target_task(target, accuracy, task_language)
        for recipe, values in perplexity.items():
            if recipe == target or (recipe not in (*LANGUAGES, "dense") and target in recipe_languages(recipe)):
                rows.append(_recipe_row(target, recipe, values, reference, others, task, accuracy, stderr, items))
    return rows


def _target_task(target: str, accuracy: Mapping[str, Mapping[str, float]], task_language: Callable) -> str | None:
    tasks = [task for task in accuracy.get(target, {}) if task_language(task) == target]
    proxies = [task for task in tasks if task.startswith("lp_prune_proxy_")]
    return (proxies or tasks or [None])[0]


def _recipe_row(target, recipe, values, reference, others, task, accuracy, stderr, items) -> RecipeRow:
    own_others = _geometric_mean([values.get(lang, math.nan) for lang in others])
    ref_others = _geometric_mean([reference[lang] for lang in others])
    vs_target = None
    if task and recipe != target:
        vs_target = target_difference(task, recipe, [target], accuracy, stderr, items)
    return RecipeRow(
        target=target,
        recipe=recipe,
        target_perplexity=values.get(target, math.nan),
        others_perplexity=own_others,
        target_change=values.get(target, math.nan) / reference[target] - 1,
        others_change=own_others / ref_others - 1 if ref_others else math.nan,
        task=task,
        accuracy=accuracy.get(recipe, {}).get(task, math.nan) if task else math.nan,
        stderr=stderr.get(recipe, {}).get(task, math.nan) if task else math.nan,
        vs_target=vs_target,
    )


def _geometric_mean(values: Sequence[float]) -> float:
    finite = [v for v in values if is_finite(v) and v > 0]
    return math.exp(statistics.fmean(math.log(v) for v in finite)) if finite else math.nan


def recipe_verdicts(rows: Sequence[RecipeRow]) -> list[str]:
    """The two questions of the measure, answered per target language."""
    lines = []
    for target in dict.fromkeys(row.target for row in rows):
        candidates = [row for row in rows if row.target == target and row.recipe != target]
        if not candidates:
            continue
        keep = [row.recipe for row in candidates if row.keeps_target_cuts_others]
        beat = [f"{row.recipe} ({row.vs_target.text()})" for row in candidates if row.beats_target_downstream]
        lines.append(
            f"{target}: target within {KEEP_TARGET:.0%} of {target}-calibration while the others' perplexity "
            f"falls by {CUT_OTHERS:.0%} or more: {', '.join(keep) or 'none'}; beats it on the downstream "
            f"task beyond {Z:g} stderrs: {', '.join(beat) or 'none'}."
        )
    return lines


def comparison_recipes(comparison: Any) -> dict[str, list[RecipeRow]]:
    """recipe_rows per setting of a compare result; settings without a recipe beside its target are left out."""
    from lp_prune.evaluation.downstream import task_language

    out = {}
    for setting, matrix in comparison.perplexity.items():
        rows = recipe_rows(
            matrix,
            comparison.accuracy.get(setting, {}),
            comparison.accuracy_stderr.get(setting, {}),
            comparison.items.get(setting, {}),
            task_language,
        )
        if any(row.recipe != row.target for row in rows):
            out[setting] = rows
    return out


def recipe_table(rows: Sequence[RecipeRow]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for the report: one row per target and recipe."""
    header = ["target", "recipe", "target ppl", "others ppl (geo. mean)", "task acc ± stderr", "vs target-cal."]
    header.append(f"keeps target ±{KEEP_TARGET:.0%}, others -{CUT_OTHERS:.0%}")
    table = []
    for row in rows:
        reference = row.recipe == row.target
        change = "" if reference else f" ({row.target_change:+.1%})"
        others = "" if reference else f" ({row.others_change:+.1%})"
        accuracy = f"{row.accuracy:.3f} ± {row.stderr:.3f}" if is_finite(row.accuracy) else "-"
        table.append(
            [
                row.target,
                row.recipe,
                f"{row.target_perplexity:.2f}{change}",
                f"{row.others_perplexity:.2f}{others}",
                accuracy,
                row.vs_target.text() if row.vs_target else "-",
                "" if reference else ("yes" if row.keeps_target_cuts_others else "no"),
            ]
        )
    return header, table
