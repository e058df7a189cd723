"""`lp-prune sweep FILE`: run a W&B sweep file locally, offline, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from jsonargparse import ArgumentParser, Namespace

if TYPE_CHECKING:
    from lp_prune.sweeps.runner import PlannedRun

HELP = "Run every combination of a W&B sweep file locally (offline W&B), skipping finished runs."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("file", type=str, help="W&B sweep YAML (grid or random), e.g. sweeps/languages.yaml")
    parser.add_argument("--root", type=str, default="runs/sweeps", help="runs go to ROOT/<sweep name>/<run>")
    parser.add_argument("--count", type=int | None, default=None, help="number of draws of a random sweep")
    parser.add_argument("--seed", type=int, default=0, help="seed of a random sweep's draws")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true", help="list, run nothing")


def execute(args: Namespace) -> int:
    from lp_prune.sweeps.expand import expand, load_sweep
    from lp_prune.sweeps.runner import execute as run_all
    from lp_prune.sweeps.runner import plan, validate_runs

    sweep = load_sweep(args.file)
    runs = plan(sweep, expand(sweep, args.count, args.seed), Path(args.root))
    validate_runs(runs, sweep)
    if args.dry_run:
        print_plan(runs, Path(args.root) / sweep.name)
        return 0
    outcomes = run_all(runs, sweep, max(1, args.parallel))
    failed = [outcome.run.name for outcome in outcomes if not outcome.succeeded]
    print(f"Sweep {sweep.name}: {len(runs) - len(failed)}/{len(runs)} complete in {Path(args.root) / sweep.name}")
    if failed:
        print(f"Failed: {', '.join(failed)} (rerun the same command to retry them)")
        return 1
    print(f"Compare them: lp-prune compare {Path(args.root) / sweep.name}")
    return 0


def print_plan(runs: list[PlannedRun], folder: Path) -> None:
    """--dry-run: each run's status and command, then how many are done, to run and to resume."""
    for run in runs:
        print(f"{run.status:>10}  {run.name}  {' '.join(run.argv)}")
    done = sum(run.complete for run in runs)
    resumed = sum(run.resumable for run in runs)
    to_resume = f" ({resumed} continue where they stopped)" if resumed else ""
    print(f"{len(runs)} runs in {folder}: {done} complete, {len(runs) - done} to run{to_resume}")
