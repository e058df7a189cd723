"""`lp-prune run`: one pruning run from a YAML config plus dotted overrides, or `--resume RUN_DIR`."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from lp_prune.config import RunConfig, run_config_from
from lp_prune.errors import UserError

HELP = "Prune one model with one method and calibration language; measure and save the run."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the keys below")
    parser.add_argument("--resume", type=str | None, default=None, help="continue the unfinished run in this folder")
    parser.add_class_arguments(RunConfig)


def execute(namespace: Namespace) -> int:
    from lp_prune.pipeline import run  # heavy imports only when needed
    from lp_prune.tracking import RunDirectory

    if namespace.resume:
        run_dir = RunDirectory(Path(namespace.resume))
        if run_dir.is_complete():
            raise UserError(f"--resume {run_dir.root}: the run is complete already; nothing to resume")
        if not run_dir.config.exists():
            raise UserError(f"--resume {run_dir.root}: no config.yaml there; not a run directory")
        config = run_dir.read_config()
        config.out = str(run_dir.root)
        out = run(config, resume=True)
    else:
        out = run(run_config_from(namespace))
    print_results(out)
    return 0


def print_results(run_dir: Path) -> None:
    """The results table, the run directory and where the W&B run is (on rank 0, which wrote them)."""
    from lp_prune.pipeline import is_rank_zero
    from lp_prune.reporting import format_run_results, wandb_line
    from lp_prune.tracking import RunDirectory, read_json

    if not is_rank_zero():  # the other processes of a data-parallel run: rank 0 prints
        return
    summary = read_json(RunDirectory(run_dir).summary)
    print(format_run_results(summary, run_dir, wandb_line(run_dir, summary.get("wandb_url"))))
