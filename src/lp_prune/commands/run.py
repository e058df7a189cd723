"""`lp-prune run`: one pruning run from a YAML config plus dotted overrides, or `--resume RUN_DIR`."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from lp_prune.cli_support import ConfigFile
from lp_prune.config import RunConfig, add_run_config_arguments, run_config_from
from lp_prune.errors import UserError
from lp_prune.tracking.run_dir import MARKER_FILE, RunDirectory

HELP = "Prune one model with one method and calibration language; measure and save the run."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--config", action=ConfigFile, help="YAML file with any of the keys below")
    parser.add_argument("--resume", type=str | None, default=None, help="continue the unfinished run in this folder")
    add_run_config_arguments(parser)


def execute(namespace: Namespace) -> int:
    from lp_prune.pipeline import run  # heavy imports only when needed

    if namespace.resume is not None:
        folder = resume_folder(namespace.resume)
        out = run(resume_config(RunDirectory(folder), run_config_from(namespace)), resume=True)
    else:
        out = run(run_config_from(namespace))
    print_results(out)
    return 0


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
    from lp_prune.tracking.fingerprint import check_resume_flags

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
    from lp_prune.reporting import format_run_results, wandb_line
    from lp_prune.tracking import RunDirectory, read_json
    from lp_prune.tracking.run_writer import is_rank_zero

    if not is_rank_zero():  # the other processes of a data-parallel run: rank 0 prints
        return
    summary = read_json(RunDirectory(run_dir).summary)
    print(format_run_results(summary, run_dir, wandb_line(run_dir, summary.get("wandb_url"))))
