"""`lp-prune` command line: YAML configs plus dotted overrides, the LightningCLI way (jsonargparse).

    lp-prune run --config configs/default.yaml --prune.method wanda --data.calibration_language sw

`configs/...` and `sweeps/...` paths name the files that ship in the package (config.hub) unless
such a file exists in the working folder; `lp-prune configs` lists them.

`run` and `estimate` also take `key=value` words (`prune.method=wanda`), the form of W&B's
`${args_no_hyphens}` sweep macro, and `-c FILE` for `--config FILE`. Multi-word flags are spelled with
underscores, as the config keys are (`--dry_run`, `--no_wandb`); the hyphenated spelling (`--dry-run`)
is read the same and not listed. `lp-prune --version` prints the installed version.
`lp-prune --help`, `--version` and `configs` load no ML library (torch, Lightning, transformers).
Every problem the user can fix is reported as one line on stderr with a non-zero exit; `--debug`
shows the traceback instead. Options that run code (model.trust_remote_code, eval.include_path) count
only as flags of this command line, never from a --config file (config.code_options).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Collection

from jsonargparse import ArgumentParser

from lp_prune import __version__
from lp_prune.cli_support import (
    command_parser,
    configure_parsing,
    hyphenated,
    interrupted_line,
    one_line,
    options_from,
    stop_on_signals,
    underscored,
)
from lp_prune.commands import COMMANDS
from lp_prune.errors import ConfigError, Interrupted, UserError

EXIT_USER_ERROR = 2
RUN_CONFIG_COMMANDS = ("run", "estimate")  # their options are RunConfig's keys
LIBRARY_FREE_COMMANDS = ("configs",)  # load no ML library: their logging is left alone (seconds of imports)
HELP_FLAGS = ("-h", "--help")


def build_parser(commands: Collection[str] = tuple(COMMANDS)) -> ArgumentParser:
    """The `lp-prune` parser. Every command is listed with its help line; only those in `commands` get
    their options (and import their module): a command line names one, and `lp-prune --help` none."""
    configure_parsing()
    parser = ArgumentParser(prog="lp-prune", description=__doc__.split("\n\n")[0], exit_on_error=False)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument("--version", action="version", version=f"lp-prune {__version__}")
    subcommands = parser.add_subcommands(dest="command")
    for name, help_line in COMMANDS.items():
        if name in commands:
            options_parser = command_parser(importlib.import_module(f"lp_prune.commands.{name}"))
        else:
            options_parser = ArgumentParser(description=help_line, exit_on_error=False)
        subcommands.add_subcommand(name, options_parser, help=help_line)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:  # before the libraries load: no wandb or torch needed for this
        print(f"lp-prune {__version__}")
        return 0
    argv = with_hyphens(underscored(argv))
    debug = "--debug" in argv
    command_word = next((word for word in argv if not word.startswith("-")), None)
    if command_word not in LIBRARY_FREE_COMMANDS and not any(flag in argv for flag in HELP_FLAGS):
        _quiet_libraries()  # help runs no command: no library to quiet, and seconds saved
    parser = build_parser([command_word] if command_word in COMMANDS else [])
    try:
        with stop_on_signals():
            check_config_files(argv)
            parsed = parser.instantiate_classes(parser.parse_args(argv))
            command = importlib.import_module(f"lp_prune.commands.{parsed.command}")
            options = parsed[parsed.command]
            if parsed.command in RUN_CONFIG_COMMANDS:  # code only where these flags ask (config.code_options)
                from lp_prune.config.code_options import flags_only

                flags_only(options, argv[argv.index(parsed.command) + 1 :], parsed.command)
            if hasattr(command, "OPTIONS"):  # run and estimate read their namespace with run_config_from
                options = options_from(options, command.OPTIONS)
            return command.execute(options)
    except (UserError, argparse.ArgumentError) as err:
        if debug:
            raise
        close_progress_bars()  # the error starts a line of its own, not the end of a bar's
        print(f"lp-prune: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Interrupted as stop:
        print(f"lp-prune: {interrupted_line(stop)}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:  # a SIGINT before the handler was installed
        print("lp-prune: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def with_hyphens(argv: list[str]) -> list[str]:
    """`lp-prune run prune.method=wanda` as `lp-prune run --prune.method=wanda` (W&B's
    `${args_no_hyphens}`); only words whose key is a RunConfig key, only for run and estimate."""
    command = next((index for index, word in enumerate(argv) if not word.startswith("-")), None)
    if command is None or argv[command] not in RUN_CONFIG_COMMANDS:
        return argv
    from lp_prune.sweeps.runner import is_config_key

    return [*argv[: command + 1], *hyphenated(argv[command + 1 :], is_config_key)]


def check_config_files(argv: list[str]) -> None:
    """Every `--config FILE` (a packaged one for a `configs/...` path not found here) is a regular file of
    readable UTF-8 YAML within safe_yaml's limits, said with its path (jsonargparse would raise a
    decoding traceback on a binary file, and wait forever on a FIFO); for run and estimate, its groups
    of settings are mappings."""
    from lp_prune.config.hub import resolve
    from lp_prune.safe_yaml import load_yaml_file

    command = next((word for word in argv if not word.startswith("-")), None)
    for index, arg in enumerate(argv):
        if arg in ("--config", "-c") and index + 1 < len(argv):
            path = argv[index + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            continue
        path = resolve(path)
        if not os.path.exists(path):
            continue  # a missing file is jsonargparse's to report, as before
        if not os.path.isfile(path):
            raise ConfigError(f"--config {path} is not a regular file (a folder, FIFO or device); expected YAML")
        values = load_yaml_file(path)
        if command in RUN_CONFIG_COMMANDS:
            from lp_prune.config.io import check_groups

            check_groups(values, path)


def _quiet_libraries() -> None:
    """Library chatter hides what matters: keep the libraries' warnings and errors only. Their progress
    bars stay: model downloads (16-140 GB for the study's models) and weight loading take minutes."""
    import warnings

    from transformers.utils import logging as hf_logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hf_logging.set_verbosity_error()
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _one_handler_per_line(("lightning", "torchmetrics", "huggingface_hub"))
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _one_handler_per_line(names: tuple[str, ...]) -> None:
    """Libraries that add their own stderr handler at import and still propagate to the root handler
    print each line twice (`fabric run`'s "Initializing distributed" lines): their own handler is the one."""
    import lightning  # noqa: F401  (adds the 'lightning' handler; imports torchmetrics, huggingface_hub)

    for name in names:
        library = logging.getLogger(name)
        if library.handlers:
            library.propagate = False


if __name__ == "__main__":
    sys.exit(main())


def close_progress_bars() -> None:
    """Close the progress bars a failed command left open (tqdm's, which Lightning's and lm-eval's are)."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or ()):
        bar.close()
