"""`lp-prune` command line: YAML configs plus dotted overrides, the LightningCLI way (jsonargparse).

    lp-prune run --config configs/default.yaml --prune.method wanda --data.calibration_language sw

Every problem the user can fix is reported as one line on stderr with a non-zero exit; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from jsonargparse import ArgumentParser, set_parsing_settings

from lp_prune.errors import Interrupted, UserError
from lp_prune.safe_yaml import install_in_jsonargparse, load_yaml_file

EXIT_USER_ERROR = 2
COMMANDS = ("run", "sweep", "compare", "analyze", "eval", "estimate")  # modules in lp_prune.commands


def build_parser() -> ArgumentParser:
    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # config field docstrings -> --help
    install_in_jsonargparse()  # --config files and values: bounded YAML, no key named twice
    parser = ArgumentParser(prog="lp-prune", description=__doc__.split("\n\n")[0], exit_on_error=False)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    subcommands = parser.add_subcommands(dest="command")
    for name in COMMANDS:
        command = importlib.import_module(f"lp_prune.commands.{name}")
        sub = ArgumentParser(description=command.HELP, exit_on_error=False)
        command.add_arguments(sub)
        subcommands.add_subcommand(name, sub, help=command.HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    _quiet_libraries()
    parser = build_parser()
    try:
        with stop_on_signals():
            check_config_files(argv)
            parsed = parser.instantiate_classes(parser.parse_args(argv))
            command = importlib.import_module(f"lp_prune.commands.{parsed.command}")
            return command.execute(parsed[parsed.command])
    except (UserError, argparse.ArgumentError) as err:
        if debug:
            raise
        print(f"lp-prune: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Interrupted as stop:
        print(f"lp-prune: {interrupted_line(stop)}", file=sys.stderr)
        return 128 + stop.signum
    except KeyboardInterrupt:  # a SIGINT before the handler was installed
        print("lp-prune: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM (SLURM, Kubernetes, kill) and SIGINT (Ctrl-C) raise Interrupted in the main thread, where
    Lightning lets it through (it would turn Ctrl-C into exit 1 and SIGTERM into exit 0 inside a loop).
    A repeated signal during the shutdown is ignored. The previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:
            return
        received.append(signum)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def interrupted_line(stop: Interrupted) -> str:
    name = signal.Signals(stop.signum).name
    if stop.run_dir is None:
        return f"stopped by {name}"
    return f"stopped by {name}; the run is resumable: lp-prune run --resume {shlex.quote(stop.run_dir)}"


def check_config_files(argv: list[str]) -> None:
    """Every `--config FILE` is readable UTF-8 YAML within safe_yaml's limits, said with its path
    (jsonargparse would raise a decoding traceback on a binary file)."""
    for index, arg in enumerate(argv):
        if arg == "--config" and index + 1 < len(argv):
            path = argv[index + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            continue
        if os.path.isfile(path):  # a missing file is jsonargparse's to report, as before
            load_yaml_file(path)


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
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


# jsonargparse's answer to a value outside a Literal's choices (alone, or in a union with bool), said
# the way lp_prune says it.
_REJECTED = re.compile(
    r'Parser key "(?P<key>[^"]+)": .*Given value: (?P<value>.*)$|'
    r'Parser key "(?P<key1>[^"]+)": Expected a typing\.Literal\[[^\]]*\]\. Got value: (?P<value1>.*)$'
)
_LITERAL = re.compile(r"typing\.Literal\[(?P<choices>[^\]]*)\]")


def one_line(err: BaseException) -> str:
    line = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    rejected, literals = _REJECTED.search(line), _LITERAL.findall(line)
    if rejected and literals:
        choices = [choice.strip(" '\"") for group in literals for choice in group.split(",")]
        choices += ["true", "false"] if "<class 'bool'>" in line else []
        key, value = rejected["key"] or rejected["key1"], rejected["value"] or rejected["value1"]
        return f"{key} '{value}' is not one of: {', '.join(dict.fromkeys(choices))}"
    return line


if __name__ == "__main__":
    sys.exit(main())
