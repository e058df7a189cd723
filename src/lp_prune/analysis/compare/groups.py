"""How the runs of a comparison group: by setting, recipes in table order, one run per recipe, the
runs compared across calibration languages, and the seed pairs that give the same-language floor."""

from __future__ import annotations

import itertools
from collections import defaultdict

from lp_prune.analysis.runs import Run
from lp_prune.config import LANGUAGES


def by_setting(runs: list[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.setting].append(run)
    return dict(groups)


def recipe_order(runs: list[Run]) -> list[str]:
    """The runs' recipes: target-language recipes in LANGUAGES order (any text source), then the
    others as they come."""
    present = list(dict.fromkeys(run.recipe for run in runs))
    target = {run.recipe: run.target_language for run in runs if run.target_language is not None}

    def position(recipe: str) -> tuple[int, int]:
        if recipe in target:
            return 0, LANGUAGES.index(target[recipe])
        return 1, present.index(recipe)

    return sorted(present, key=position)


def one_run_per_language(runs: list[Run]) -> dict[str, Run]:
    """The first run of each recipe (single languages first, in LANGUAGES order; masks are not averaged)."""
    first: dict[str, Run] = {}
    for run in runs:
        first.setdefault(run.recipe, run)
    return {recipe: first[recipe] for recipe in recipe_order(runs)}


def cross_language_runs(runs: list[Run]) -> dict[str, Run]:
    """The runs whose masks are compared across calibration: one per target-language recipe (any text
    source: 'sw', 'sw mc4') when there are two or more of those (mixes, 'all', generated text are no
    calibration *language*), else one per recipe."""
    first = one_run_per_language(runs)
    single = {recipe: run for recipe, run in first.items() if run.target_language is not None}
    return single if len(single) >= 2 else first


def seed_pairs(runs: list[Run]) -> dict[str, tuple[Run, Run]]:
    """Per recipe, two runs with different calibration seeds (the first two): the same-language floor."""
    pairs: dict[str, tuple[Run, Run]] = {}
    for recipe in recipe_order(runs):
        repeats = [run for run in runs if run.recipe == recipe]
        for a, b in itertools.combinations(repeats, 2):
            if a.calibration_seed != b.calibration_seed:
                pairs[recipe] = (a, b)
                break
    return pairs
