"""`lp-prune sweep FILE`: run a W&B sweep file locally, offline, resumable."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from jsonargparse import ArgumentParser

from lp_prune.cli_support import add_options
from lp_prune.commands import COMMANDS

if TYPE_CHECKING:
    from lp_prune.sweeps.expand import Sweep
    from lp_prune.sweeps.runner import PlannedRun, RunOutcome

HELP = COMMANDS["sweep"]


@dataclass
class SweepOptions:
    """Options of `lp-prune sweep`."""

    file: str
    """W&B sweep YAML (grid, random or bayes), e.g. sweeps/languages-default.yaml (packaged: found from any folder)."""
    root: str = "runs/sweeps"
    """Runs go to ROOT/<sweep name>/<run>."""
    count: int | None = None
    """Number of runs of a random or bayes sweep (default: the file's run_cap)."""
    seed: int = 0
    """Seed of a random sweep's draws and of a bayes sweep's search."""
    parallel: int = 1
    """Runs at a time."""
    dry_run: bool = False
    """List the runs and their commands, run nothing."""
    max_runs: int = 10_000
    """Refuse a sweep of more runs than this (counted before any is listed, --dry_run too)."""
    where: bool = False
    """Print where FILE is (a packaged one: its full path) and exit, for `wandb sweep "$(lp-prune sweep F --where)"`."""
    trust_remote_code: bool = False
    """Let every run's transformers run the model folder's own Python code (a sweep file cannot ask for it)."""
    include_path: list[str] | str | None = None
    """Your own lm-eval task folders for every run (their !function entries are Python code; a sweep file
    cannot name them)."""

    def code_flags(self) -> tuple[str, ...]:
        """The options that run code, as every run's command line gets them from this one."""
        flags = ["--model.trust_remote_code=true"] if self.trust_remote_code else []
        paths = [self.include_path] if isinstance(self.include_path, str) else list(self.include_path or [])
        flags += [f"--eval.include_path={json.dumps(paths)}"] if paths else []
        return tuple(flags)


OPTIONS = SweepOptions


def add_arguments(parser: ArgumentParser) -> None:
    add_options(parser, SweepOptions, positional=("file",), switches=("--dry_run", "--where"))


def execute(options: SweepOptions) -> int:
    from lp_prune.sweeps.count import check_sweep_size
    from lp_prune.sweeps.expand import expand, load_sweep
    from lp_prune.sweeps.runner import execute as run_all
    from lp_prune.sweeps.runner import plan, validate_runs

    sweep = replace(load_sweep(options.file), code_flags=options.code_flags())
    if options.where:
        print(sweep.path.resolve())
        return 0
    check_root(Path(options.root))
    check_sweep_size(sweep, options.count, options.max_runs)
    folder = Path(options.root) / sweep.name
    if sweep.method == "bayes":
        return execute_bayes(sweep, options, folder)
    runs = plan(sweep, expand(sweep, options.count, options.seed), Path(options.root))
    validate_runs(runs, sweep)
    if options.dry_run:
        print_plan(runs, folder)
        return 0
    outcomes = run_all(runs, sweep, max(1, options.parallel))
    return report(sweep, runs, outcomes, folder)


def check_root(root: Path) -> None:
    """--root is a folder, or a path where one can be made (not a file, nor under one)."""
    from lp_prune.errors import ConfigError

    for path in (root, *root.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                raise ConfigError(f"--root {root}: {path} is not a folder")
            return


def execute_bayes(sweep: Sweep, options: SweepOptions, folder: Path) -> int:
    """A bayes sweep: each run chosen when a slot is free, from the metrics of the finished ones."""
    from lp_prune.sweeps.bayes import BayesSweep

    search = BayesSweep(sweep, Path(options.root), options.count, options.seed)
    if options.dry_run:
        print_plan(search.chosen, folder)
        print(f"{search.total - len(search.chosen)} more are chosen by the Bayesian search as runs finish")
        return 0
    outcomes = search.execute(max(1, options.parallel))
    return report(sweep, search.chosen, outcomes, folder)


def report(sweep: Sweep, runs: list[PlannedRun], outcomes: list[RunOutcome], folder: Path) -> int:
    failed = [outcome.run.name for outcome in outcomes if not outcome.succeeded]
    print(f"Sweep {sweep.name}: {len(runs) - len(failed)}/{len(runs)} complete in {folder}")
    if failed:
        print(f"Failed: {', '.join(failed)} (rerun the same command to retry them)")
        return 1
    print(f"Compare them: lp-prune compare {folder}")
    return 0


def print_plan(runs: list[PlannedRun], folder: Path) -> None:
    """--dry_run: each run's status and command, then how many are done, to run and to resume."""
    for run in runs:
        print(f"{run.status:>10}  {run.name}  {' '.join(run.argv)}")
    done = sum(run.complete for run in runs)
    resumed = sum(run.resumable for run in runs)
    to_resume = f" ({resumed} continue where they stopped)" if resumed else ""
    print(f"{len(runs)} runs in {folder}: {done} complete, {len(runs) - done} to run{to_resume}")
