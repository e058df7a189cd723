"""Reading a run configuration: the jsonargparse parser of RunConfig's keys (YAML, dotted flags,
--help) and a saved run's config.yaml read back through it.

Under `prune`, the parser knows the shared keys (PruneConfig's fields), `prune.method` (a name or
class path) and, as flat keys, the settings of every registered method (config.method_keys): a
setting that is not given stays out of the namespace, so the chosen method keeps its own default.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

from lp_prune.config.method_keys import MethodSetting, method_settings, with_settings
from lp_prune.config.prune_schema import PruneConfig
from lp_prune.config.schema import RunConfig
from lp_prune.errors import ConfigError, DataError
from lp_prune.pruning.registry import DEFAULT_METHOD


def run_config_from(namespace: Any) -> RunConfig:
    """A RunConfig from a parsed and instantiated jsonargparse namespace of RunConfig's arguments."""
    values = {f.name: namespace[f.name] for f in fields(RunConfig)}
    prune = values["prune"]
    values["prune"] = PruneConfig.of(**(prune.as_dict() if hasattr(prune, "as_dict") else prune))
    return RunConfig(**values)


def add_run_config_arguments(parser: Any) -> None:
    """RunConfig's keys as options of `parser` (see the module's doc for those under prune)."""
    from lp_prune.cli_support import field_docs

    parser.add_class_arguments(RunConfig, skip={"prune"})
    parser.add_class_arguments(PruneConfig, "prune", skip={"method"}, instantiate=False)
    group = parser.groups["prune"]
    group.title = field_docs(RunConfig)["prune"].rstrip(".")
    method_help = field_docs(PruneConfig)["method"]
    group.add_argument("--prune.method", type=str, default=DEFAULT_METHOD, metavar="METHOD", help=method_help)
    shared = {item.name for item in fields(PruneConfig)}
    for key, setting in method_settings().items():
        if key in shared:
            raise TypeError(f"method {setting.readers[0]}: its setting '{key}' is named like a key of every method")
        group.add_argument(f"--prune.{key}", type=setting.kind, default=argparse.SUPPRESS, help=setting_help(setting))


def setting_help(setting: MethodSetting) -> str:
    from lp_prune.cli_support import field_docs

    doc = field_docs(setting.owner).get(setting.name, "").rstrip(".")
    return f"{doc} (a setting of {', '.join(setting.readers)}; default: {json.dumps(setting.default, default=str)})"


def run_config_parser() -> Any:
    """The parser of RunConfig's keys, as `lp-prune run` reads them (YAML, dotted flags, --help)."""
    from jsonargparse import ArgumentParser, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # field docstrings -> --help
    parser = ArgumentParser(exit_on_error=False)
    add_run_config_arguments(parser)
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
    unregistered = unregistered_settings(values)
    try:
        config = run_config_from(parser.instantiate_classes(parser.parse_object(values)))
        config.prune.method = with_settings(config.prune.method, unregistered)
    except Exception as err:  # jsonargparse reports type errors as several exception types
        detail = " ".join(str(err).split())
        raise DataError(f"{path} is not a valid lp_prune run config: {detail}") from None
    return config


def unregistered_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The prune keys of a config.yaml that no registered method has, taken out of `values`: settings of
    a method chosen by class path, or of one this machine does not have (kept with its name)."""
    prune = values.get("prune")
    if not isinstance(prune, dict):
        return {}
    known = {item.name for item in fields(PruneConfig)} | set(method_settings())
    return {key: prune.pop(key) for key in list(prune) if key not in known}


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
