"""`lp-prune run`: one pruning run from a YAML config plus dotted overrides."""

from __future__ import annotations

from dataclasses import fields

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from lp_prune.config import RunConfig

HELP = "Prune one model with one method and calibration language; measure and save the run."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the keys below")
    parser.add_class_arguments(RunConfig)


def run_config_from(namespace: Namespace) -> RunConfig:
    return RunConfig(**{f.name: namespace[f.name] for f in fields(RunConfig)})


def execute(namespace: Namespace) -> int:
    from lp_prune.pipeline import run  # heavy imports only when needed

    run_dir = run(run_config_from(namespace))
    print(f"Run directory: {run_dir}")
    return 0
