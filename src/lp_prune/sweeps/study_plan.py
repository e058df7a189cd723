"""The power plan of `lp-prune study`: the grid's sizes read from its run configs, the noise read from a
pilot (a previous study.json), and per claim what the grid could detect, what it needs, and how long
its phases would take here.

    lp-prune study --plan                                  # the pilot: OUT/study.json when it exists
    lp-prune study --plan --pilot docs/results/study.json
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lp_prune.analysis.plan import GridSizes, Pilot, Plan, Targets, make_plan
from lp_prune.config.tasks import choice_probe_family, expand_tasks, split_list
from lp_prune.storage.files import read_json

PROXY_FAMILY = "proxy"


def task_family(task: str) -> str:
    """The family a downstream task belongs to for the plan: a probe family ('cldr_currency',
    'capitals'), or 'proxy' (the proxy tasks), or the task's own name."""
    return choice_probe_family(task) or (PROXY_FAMILY if task.startswith("lp_prune_proxy_") else task)


def family_items() -> dict[str, int]:
    """Items per language of the offline probes' families (the same in every language)."""
    from lp_prune.evaluation import probe, probe_cldr

    counts = {f"cldr_{family}": n for family, n in probe_cldr.item_counts().items()}
    return counts | probe.item_counts()


def grid_sizes(configs: Sequence[Any], analyze_tokens: int) -> GridSizes:
    """The sizes of a grid of run configs: draws per calibration row (the fewest of any row), the
    downstream families with their items per language, items per cell (eval.limit)."""
    seeds: dict[tuple[str, str], set[int]] = {}
    for config in configs:
        row = (config.prune.method.name, config.data.calibration_language)
        seeds.setdefault(row, set()).add(config.data.seed)
    first = configs[0]
    tasks = expand_tasks(split_list(first.eval.tasks), first.eval.languages or first.data.eval_languages)
    available = family_items()
    limit = first.eval.limit or math.inf
    families = {}
    for task in tasks:
        family = task_family(task)
        families[family] = available.get(family, first.eval.limit or 0)
    rows = len({language for _, language in seeds})
    items = int(min(limit, max(families.values(), default=0)))
    return GridSizes(items, min(map(len, seeds.values())), families, rows, analyze_tokens)


def read_pilot(path: Path) -> Pilot | None:
    return Pilot.from_record(read_json(path)) if path.is_file() else None


def plan_lines(
    plan: Plan, pilot_path: Path, sizes: GridSizes, runs: int, pilot_rate: float | None, rate: float | None
) -> list[str]:
    """The plan as the lines `lp-prune study --plan` prints."""
    lines = [
        f"Power plan from the pilot {pilot_path} (80% power, two-sided t at 0.05; the verdict engine's noise model)",
        f"Grid: {runs} runs, {sizes.draws} draws per calibration row, {sizes.rows} rows, up to "
        f"{sizes.items_per_cell} items per (task, language) cell; families "
        + ", ".join(f"{family} ({sizes.items(family)})" for family in sizes.families)
        + f"; analyze {sizes.analyze_tokens} tokens per language",
        "",
        f"{'claim':<20} {'size':<20} {'grid':>6} {'needs':>7} {'detects':>8} {'target':>7}",
    ]
    for line in plan.lines:
        needed = "-" if line.needed is None else f"{line.needed:g}"
        detects = "-" if line.detectable is None else f"{line.detectable:.3f}"
        mark = "" if line.detectable is None else ("  ok" if line.enough else "  SHORT")
        lines.append(
            f"{line.claim:<20} {line.quantity:<20} {line.grid:>6g} {needed:>7} {detects:>8} {line.target:>7g}{mark}"
            + (f"  ({line.note})" if line.note else "")
        )
    lines += ["", *plan.notes]
    if plan.phases:
        total = sum(plan.phases.values())
        parts = ", ".join(f"{phase} {seconds / 60:.1f}" for phase, seconds in plan.phases.items())
        rates = (
            f"the pilot's phase times at {pilot_rate or '?'} GFLOP/s scaled to {rate or 0:.0f} GFLOP/s measured here"
        )
        lines.append(f"Projected time here: {total / 60:.0f} min ({parts} min; {rates})")
    return lines


def print_plan(pilot_path: Path, sizes: GridSizes, runs: int, matmul_gflops: float | None) -> int:
    """Print the plan of a grid from a pilot; 1 when there is no pilot to read."""
    pilot = read_pilot(pilot_path)
    if pilot is None:
        print(
            f"No pilot at {pilot_path}: run the study once (or name a study.json with --pilot) to plan from its noise"
        )
        return 1
    plan = make_plan(pilot, sizes, Targets(), grid_runs=runs, matmul_gflops=matmul_gflops)
    print("\n".join(plan_lines(plan, pilot_path, sizes, runs, pilot.matmul_gflops, matmul_gflops)))
    return 0
