"""`lp-prune run`: one pruning run from a YAML config plus dotted overrides, or `--resume RUN_DIR`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from lp_prune.config import RunConfig
from lp_prune.errors import UserError

HELP = "Prune one model with one method and calibration language; measure and save the run."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the keys below")
    parser.add_argument("--resume", type=str | None, default=None, help="continue the unfinished run in this folder")
    parser.add_class_arguments(RunConfig)


def run_config_from(namespace: Namespace) -> RunConfig:
    return RunConfig(**{f.name: namespace[f.name] for f in fields(RunConfig)})


def saved_run_config(run_dir: Path) -> RunConfig:
    """The configuration a run directory was started with (its config.yaml)."""
    from lp_prune.cli import build_parser

    if not (run_dir / "config.yaml").exists():
        raise UserError(f"--resume {run_dir}: no config.yaml there; not a run directory")
    parser = build_parser()
    parsed = parser.instantiate_classes(parser.parse_args(["run", "--config", str(run_dir / "config.yaml")]))
    config = run_config_from(parsed.run)
    config.out = str(run_dir)
    return config


def execute(namespace: Namespace) -> int:
    from lp_prune.pipeline import run  # heavy imports only when needed
    from lp_prune.tracking import RunDirectory

    if namespace.resume:
        run_dir = RunDirectory(Path(namespace.resume))
        if run_dir.is_complete():
            raise UserError(f"--resume {run_dir.root}: the run is complete already; nothing to resume")
        out = run(saved_run_config(run_dir.root), resume=True)
    else:
        out = run(run_config_from(namespace))
    print(f"Run directory: {out}")
    return 0
