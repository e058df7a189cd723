"""Options that run code lp_prune did not ship: honoured only when this invocation's command line asks.

- `model.trust_remote_code`: transformers imports the model folder's (or hub repository's) own Python files;
- `eval.include_path`: lm-eval task folders, whose YAML may name Python functions (`!function`), imported
  when a task loads.

Files are what others hand over, so a file never asks for code: not a `--config` YAML (nor a section
file such as `--model FILE`), not a run folder's config.yaml (`eval`, `analyze`, `compare`,
`run --resume`), not a sweep file's parameters or command (`lp-prune sweep`, or a run that a W&B agent
starts, whose command line is built from the sweep). Only the flags themselves count:
`--model.trust_remote_code true` and `--eval.include_path DIR` for `run` and `estimate`,
`--trust_remote_code true` (and `--include_path DIR`) for `eval`, `analyze` and `sweep`. A file that
asks gets one warning line and the command goes on without the code; `run --resume` refuses instead
(the run would not go on as it started).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

CODE_OPTIONS: dict[str, str] = {
    "model.trust_remote_code": "runs the model folder's own Python code",
    "eval.include_path": "loads lm-eval task folders, whose !function entries are Python code",
}
OFF: dict[str, Any] = {"model.trust_remote_code": False, "eval.include_path": None}
# Set for the processes a W&B agent starts (wandb agent): their command line is the sweep's.
W_AND_B_AGENT_ENV = ("WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH")
NOT_HONOURED = "not honoured: only the command line of this invocation may ask for code"


def value_of(config: Any, key: str) -> Any:
    """The option `key` ('model.trust_remote_code') of a RunConfig (or a namespace of its sections)."""
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def set_value(config: Any, key: str, value: Any) -> None:
    section, name = key.split(".")
    setattr(getattr(config, section), name, value)


def requests(config: Any) -> dict[str, Any]:
    """The code options `config` turns on, with their values."""
    return {key: value for key in CODE_OPTIONS if (value := value_of(config, key))}


def without_code(config: Any) -> Any:
    """A copy of `config` with every code option off."""
    copied = copy.deepcopy(config)
    for key in CODE_OPTIONS:
        set_value(copied, key, OFF[key])
    return copied


def normal(key: str, value: Any) -> Any:
    """A code option's value in one spelling: a list of folders for eval.include_path, a bool otherwise."""
    if key == "eval.include_path":
        return [value] if isinstance(value, str) else list(value or [])
    return bool(value)


def describe(key: str, value: Any) -> str:
    """'model.trust_remote_code true', "eval.include_path ['/a', '/b']"."""
    return f"{key} {json.dumps(value) if isinstance(value, bool) else value}"


def flag(key: str, value: Any, name: str | None = None) -> str:
    """The flag that asks for `value` (as `--name`, by default `--key`), ready to paste into a shell."""
    if isinstance(value, bool):
        text = json.dumps(value)
    elif isinstance(value, str):
        text = shlex.quote(value)
    elif isinstance(value, Sequence) and len(value) == 1:
        text = shlex.quote(str(value[0]))
    else:
        text = shlex.quote(json.dumps(list(value)))
    return f"--{name or key} {text}"


def warn_not_asked(source: str, asked: Mapping[str, Any], flags: Mapping[str, str] | None = None) -> None:
    """One warning line per code option that the file `source` asks for; `flags` names this command's
    own flag for an option (none: the command runs no such code)."""
    for key, value in asked.items():
        name = (flags or {}).get(key)
        hint = f"; pass {flag(key, value, name)} to allow it" if name else ""
        log.warning(
            "%s asks for %s, which %s; %s%s", source, describe(key, value), CODE_OPTIONS[key], NOT_HONOURED, hint
        )


def under_wandb_agent() -> bool:
    """Whether a W&B agent started this process (its command line then comes from a sweep)."""
    return any(os.environ.get(name) for name in W_AND_B_AGENT_ENV)


# --- the command line of `run` and `estimate` -------------------------------------------------------------


def code_words(words: Sequence[str]) -> list[str]:
    """The words of `words` that set a code option: `--key value`, `--key=value` (and `--key+ value`,
    jsonargparse's list append); `key=value` words count once hyphenated (cli.with_hyphens)."""
    picked: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        name, equals, _ = word.partition("=")
        if name.startswith("--") and name[2:].removesuffix("+") in CODE_OPTIONS:
            taken = 1 if equals else _with_value(words, index)
            picked += words[index : index + taken]
            index += taken
            continue
        index += 1
    return picked


def _with_value(words: Sequence[str], index: int) -> int:
    """How many words `--key` at `index` takes: its value too, unless another option follows (a bare
    boolean flag, as W&B's ${args_no_boolean_flags} writes it)."""
    return 2 if index + 1 < len(words) and not words[index + 1].startswith("--") else 1


def without_code_words(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """`words` without those that set a code option (also written `key=value`), and those words."""
    kept: list[str] = []
    dropped: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        name, equals, _ = word.partition("=")
        key = name[2:].removesuffix("+") if name.startswith("--") else (name if equals else None)
        if key in CODE_OPTIONS:
            taken = _with_value(words, index) if name.startswith("--") and not equals else 1
            dropped += words[index : index + taken]
            index += taken
            continue
        kept.append(word)
        index += 1
    return kept, dropped


def flags_only(config: Any, words: Sequence[str], command: str) -> None:
    """Keep in `config` (a RunConfig or its parsed namespace) only the code options that the flags among
    `words` (this command line, after the command) ask for; a value that came from a file (--config,
    a section file), or a command line a W&B agent built from its sweep, is dropped with a warning."""
    from lp_prune.config.io import run_config_from, run_config_parser

    agent = under_wandb_agent()
    asked = code_words(words)
    explicit = None
    if asked and not agent:
        parser = run_config_parser()
        explicit = run_config_from(parser.instantiate_classes(parser.parse_args(asked)))
    for key in CODE_OPTIONS:
        value = value_of(config, key)
        wanted = value_of(explicit, key) if explicit is not None else None
        if value and value != wanted:
            from_sweep = agent and key in {word.lstrip("-").partition("=")[0].removesuffix("+") for word in asked}
            source = "the W&B sweep that started this run" if from_sweep else f"a file given to lp-prune {command}"
            hint = "" if agent else f"; pass {flag(key, value)} to allow it"
            log.warning(
                "%s asks for %s, which %s; %s%s", source, describe(key, value), CODE_OPTIONS[key], NOT_HONOURED, hint
            )
        set_value(config, key, copy.deepcopy(wanted) if wanted else OFF[key])
