"""Reading a run configuration: the jsonargparse parser of RunConfig's keys (YAML, dotted flags,
--help) and a saved run's config.yaml read back through it."""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

from lp_prune.config.schema import RunConfig
from lp_prune.errors import ConfigError, DataError


def run_config_from(namespace: Any) -> RunConfig:
    """A RunConfig from a parsed and instantiated jsonargparse namespace of RunConfig's arguments."""
    return RunConfig(**{f.name: namespace[f.name] for f in fields(RunConfig)})


def run_config_parser() -> Any:
    """The parser of RunConfig's keys, as `lp-prune run` reads them (YAML, dotted flags, --help)."""
    from jsonargparse import ArgumentParser, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # field docstrings -> --help
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(RunConfig)
    return parser


def read_run_config(path: str | Path) -> RunConfig:
    """A run's saved config.yaml, parsed and type-checked like the command line's."""
    from lp_prune.safe_yaml import load_yaml_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such run config; not a run directory")
    try:
        values = load_yaml_file(path)
    except ConfigError as err:
        raise DataError(f"cannot read run config {path}: {err}") from None
    if not isinstance(values, dict) or "model" not in values:
        raise DataError(f"{path} is not an lp_prune run config (no 'model' section)")
    parser = run_config_parser()
    try:
        return run_config_from(parser.instantiate_classes(parser.parse_object(values)))
    except Exception as err:  # jsonargparse reports type errors as several exception types
        detail = " ".join(str(err).split())
        raise DataError(f"{path} is not a valid lp_prune run config: {detail}") from None


def check_groups(values: Any, source: str, options: type = RunConfig, prefix: str = "") -> None:
    """Every group of settings in a YAML config (`prune:`, `data.generation:`) is a mapping of its keys;
    jsonargparse would fail on `prune: 3` with a TypeError from deep inside it."""
    if not isinstance(values, dict):
        return
    for item in fields(options):
        group = item.default_factory if item.default_factory is not MISSING else None  # type: ignore[misc]
        if not (isinstance(group, type) and is_dataclass(group)) or item.name not in values:
            continue
        value = values[item.name]
        if value is None or isinstance(value, dict):
            check_groups(value, source, group, f"{prefix}{item.name}.")
            continue
        keys = ", ".join(f.name for f in fields(group)[:3])
        raise ConfigError(
            f"{source}: {prefix}{item.name} is a group of settings ({keys}, ...), a mapping such as "
            f"'{item.name}: {{{fields(group)[0].name}: ...}}', not {value!r:.40}"
        )
