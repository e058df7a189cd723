"""`lp-prune` command line: YAML configs plus dotted overrides, the LightningCLI way (jsonargparse).

    lp-prune run --config configs/default.yaml --prune.method wanda --data.calibration_language sw

Every problem the user can fix is reported as one line on stderr with a non-zero exit; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import fields

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from lp_prune.config import RunConfig
from lp_prune.errors import UserError

EXIT_USER_ERROR = 2


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="lp-prune", description=__doc__.split("\n\n")[0], exit_on_error=False)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    commands = parser.add_subcommands(dest="command")
    run = ArgumentParser(
        description="Prune one model with one method and calibration language.", exit_on_error=False
    )
    run.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the keys below")
    run.add_class_arguments(RunConfig)
    commands.add_subcommand("run", run)
    return parser


def run_config_from(namespace: Namespace) -> RunConfig:
    return RunConfig(**{f.name: namespace[f.name] for f in fields(RunConfig)})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    _quiet_libraries()
    parser = build_parser()
    try:
        parsed = parser.instantiate_classes(parser.parse_args(argv))
        if parsed.command == "run":
            from lp_prune.pipeline import run  # heavy imports only when needed

            run_dir = run(run_config_from(parsed.run))
            print(f"Run directory: {run_dir}")
        return 0
    except (UserError, argparse.ArgumentError) as err:
        if debug:
            raise
        print(f"lp-prune: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("lp-prune: interrupted", file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    """Our own progress bars and messages only: library chatter hides what matters."""
    import warnings

    from transformers.utils import logging as hf_logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def one_line(err: BaseException) -> str:
    return " ".join(part.strip() for part in str(err).splitlines() if part.strip())


if __name__ == "__main__":
    sys.exit(main())
