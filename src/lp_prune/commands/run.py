"""`lp-prune run`: one pruning run from a YAML config plus dotted overrides, or `--resume RUN_DIR`."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from lp_prune.cli_support import ConfigFile
from lp_prune.commands import COMMANDS
from lp_prune.config import RunConfig, add_run_config_arguments, run_config_from
from lp_prune.errors import ConfigError, UserError
from lp_prune.reporting import format_run_results, wandb_line
from lp_prune.storage.files import read_json
from lp_prune.tracking.fingerprint import check_resume_flags
from lp_prune.tracking.run_dir import MARKER_FILE, RunDirectory

HELP = COMMANDS["run"]


PRECISION_HELP = (
    "the weights' precision in Lightning's spelling (32-true, bf16-true, 16-true, 64-true; bf16-mixed and 16-mixed "
    "mean bf16-true and 16-true here): sets model.dtype"
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("-c", "--config", action=ConfigFile, help="YAML file with any of the keys below")
    parser.add_argument("--resume", type=str | None, default=None, help="continue the unfinished run in this folder")
    parser.add_argument("--precision", type=str | None, default=None, help=PRECISION_HELP)
    add_run_config_arguments(parser)


def execute(namespace: Namespace) -> int:
    from lp_prune.pipeline import run  # heavy imports only when needed

    config = run_config_of(namespace)
    if namespace.resume is not None:
        folder = resume_folder(namespace.resume)
        out = run(resume_config(RunDirectory(folder), config), resume=True)
    else:
        out = run(config)
    print_results(out)
    return 0


def run_config_of(namespace: Namespace) -> RunConfig:
    """The RunConfig of a parsed `run` or `estimate` command line: RunConfig's keys, and --precision."""
    from lp_prune.launcher import with_precision

    return with_precision(run_config_from(namespace), namespace.precision)


def load_run_config(path: str) -> RunConfig:
    """The RunConfig `lp-prune run --config PATH` builds before it runs: the same parser, the same checks
    of the file, and code options dropped as from any file (lp_prune.load_config)."""
    import argparse

    from lp_prune.cli import check_config_files
    from lp_prune.cli_support import configure_parsing, one_line
    from lp_prune.config.code_options import flags_only

    argv = ["--config", path]
    check_config_files(["run", *argv])
    configure_parsing()
    parser = ArgumentParser(exit_on_error=False)
    add_arguments(parser)
    try:
        namespace = parser.instantiate_classes(parser.parse_args(argv))
    except argparse.ArgumentError as err:
        raise ConfigError(one_line(err)) from None
    flags_only(namespace, [], "run")
    return run_config_of(namespace)


def resume_folder(given: str) -> Path:
    """The folder of --resume: named, and reachable (a symbolic-link loop is one line, not a traceback)."""
    if not given.strip():
        raise UserError("--resume '' names no folder: give the run directory to continue")
    path = Path(given)
    try:
        path.stat()
    except FileNotFoundError:
        pass  # said below as 'not a run directory', with the path
    except (OSError, RuntimeError) as err:
        raise UserError(f"--resume {given}: {getattr(err, 'strerror', None) or err}") from None
    return path


def resume_config(run_dir: RunDirectory, given: RunConfig) -> RunConfig:
    """The run's saved config, checked against the flags given beside --resume; an option that runs code
    only where this command line asks for it as well (config.code_options)."""
    if run_dir.is_complete():
        raise UserError(f"--resume {run_dir.root}: the run is complete already; nothing to resume")
    if not run_dir.config.exists():
        raise UserError(f"--resume {run_dir.root}: no config.yaml there; not a run directory")
    if not run_dir.is_marked():
        raise UserError(f"--resume {run_dir.root}: not an lp_prune run directory (no valid {MARKER_FILE})")
    config = run_dir.read_config(as_written=True)
    check_resume_flags(run_dir, config, given, RunConfig())
    config.out = str(run_dir.root)
    return config


def print_results(run_dir: Path) -> None:
    """The results table, the run directory and where the W&B run is (on rank 0, which wrote them)."""
    from lp_prune.run_writer import is_rank_zero

    if not is_rank_zero():  # the other processes of a data-parallel run: rank 0 prints
        return
    summary = read_json(RunDirectory(run_dir).summary)
    print(format_run_results(summary, run_dir, wandb_line(run_dir, summary.get("wandb_url"))))
