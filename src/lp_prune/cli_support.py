"""What the `lp-prune` command line shares with its commands and the sweep runner, without loading the
CLI and every command: one command's parser, options dataclasses as arguments, one-line errors, and
the signal handling.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import itertools
import re
import shlex
import signal
import threading
import typing
from collections.abc import Callable, Iterator
from types import FrameType, ModuleType
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, set_parsing_settings

from lp_prune.errors import Interrupted
from lp_prune.safe_yaml import install_in_jsonargparse


def configure_parsing() -> None:
    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # field docstrings -> --help
    install_in_jsonargparse()  # --config files and values: bounded YAML, no key named twice


class ConfigFile(ActionConfigFile):
    """`--config FILE`, where a `configs/...` path not found here is the packaged one (config.hub)."""

    def __call__(self, parser: Any, cfg: Any, values: Any, option_string: str | None = None) -> None:
        from lp_prune.config.hub import resolve

        super().__call__(parser, cfg, resolve(values) if isinstance(values, str) else values, option_string)


def command_parser(command: ModuleType) -> ArgumentParser:
    """The parser of one module of lp_prune.commands (its HELP and add_arguments)."""
    configure_parsing()
    parser = ArgumentParser(description=command.HELP, exit_on_error=False)
    command.add_arguments(parser)
    return parser


def add_options(
    parser: ArgumentParser, options: type, positional: tuple[str, ...] = (), switches: tuple[str, ...] = ()
) -> None:
    """Every field of the dataclass `options` as `--field VALUE`, its docstring the help line.

    `positional` names fields given without a flag (a list field takes one or more words);
    `switches` are the bool flags that take no value (`--dry_run` sets the field dry_run; `underscored`
    reads `--dry-run` as that).
    """
    named = {spelling: spelling.lstrip("-").replace("-", "_") for spelling in switches}
    parser.add_class_arguments(options, skip={*positional, *named.values()})
    group = parser.groups[options.__name__]
    docs, hints = field_docs(options), typing.get_type_hints(options)
    for name in positional:
        is_list = typing.get_origin(hints[name]) is list
        kind = typing.get_args(hints[name])[0] if is_list else hints[name]
        parser.add_argument(name, type=kind, nargs="+" if is_list else None, help=docs[name])
    for name in dict.fromkeys(named.values()):
        spellings = [spelling for spelling, field in named.items() if field == name]
        group.add_argument(*spellings, dest=name, action="store_true", help=docs[name])


def underscored(argv: list[str]) -> list[str]:
    """Multi-word flags in the one spelling the parsers know, with underscores as the config keys have
    them: `--dry-run` -> `--dry_run`, `--no-wandb=true` -> `--no_wandb=true`. Dotted keys
    (`--data.files.<language>`), values and words after a bare `--` stay as they are."""
    words: list[str] = []
    for index, word in enumerate(argv):
        if word == "--":
            return words + argv[index:]
        key, equals, value = word[2:].partition("=")
        if word.startswith("--") and "-" in key and "." not in key:
            word = f"--{key.replace('-', '_')}{equals}{value}"
        words.append(word)
    return words


def options_from(namespace: Namespace, options: type) -> Any:
    """The dataclass `options` with the values of a namespace that add_options filled."""
    return options(**{item.name: namespace[item.name] for item in dataclasses.fields(options)})


def field_docs(options: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (and of the dataclasses it extends)."""
    docs: dict[str, str] = {}
    for cls in reversed(options.__mro__):
        if not dataclasses.is_dataclass(cls):
            continue
        body = ast.parse(inspect.getsource(cls)).body[0].body
        for item, after in itertools.pairwise(body):
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                text = after.value if isinstance(after, ast.Expr) else None
                if isinstance(text, ast.Constant) and isinstance(text.value, str):
                    docs[item.target.id] = inspect.cleandoc(text.value)
    return docs


def hyphenated(options: list[str], is_key: Callable[[str], bool]) -> list[str]:
    """`key=value` words (W&B's `${args_no_hyphens}`: `data.calibration_language=en`) as `--key=value`.

    Only words whose key passes `is_key` change, and never the value of an option written
    `--key value`: anything else reaches the parser as it was given.
    """
    converted: list[str] = []
    takes_value = False
    for word in options:
        key, equals, _ = word.partition("=")
        if not takes_value and equals and not word.startswith("-") and is_key(key):
            word = f"--{word}"
        takes_value = word.startswith("--") and "=" not in word and not takes_value
        converted.append(word)
    return converted


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
