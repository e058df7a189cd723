"""`lp-prune study`: the study's grid on the embedded default, analysed, compared, reported.

    lp-prune study --out docs/results --repeat

Runs sweeps/study.yaml and sweeps/study-magnitude.yaml (SparseGPT and Wanda on seven calibration
languages with two draws each, the magnitude baseline), `analyze`s and `compare`s them, and writes
study.md / study.json beside the comparison's tables and figures. Stopped and started again, it
continues: finished runs and a current analysis are kept.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser

from lp_prune.cli_support import add_options
from lp_prune.commands import COMMANDS
from lp_prune.sweeps.study import StudyOptions

HELP = COMMANDS["study"]

OPTIONS = StudyOptions


def add_arguments(parser: ArgumentParser) -> None:
    add_options(parser, StudyOptions, switches=("--repeat", "--no_wandb", "--plan"))


def execute(options: StudyOptions) -> int:
    from lp_prune.sweeps.study import run_study

    return run_study(options)
