"""Reading a run configuration: the jsonargparse parser of RunConfig's keys (YAML, dotted flags,
--help) and a saved run's config.yaml read back through it."""

from __future__ import annotations

from dataclasses import fields
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
