"""A pruning method's settings as the config spells them: flat keys beside `prune.method`.

    prune:
      method: gptq        # a registered name, or the class path of an imported PruningMethod
      bits: 3             # settings of the chosen method (fields of its dataclass)
      blocksize: 64
      sparsity: 0.5       # keys every method shares (PruneConfig's own fields)

The flat keys are the settings of every registered method, so one YAML file (configs/default.yaml,
whose blocksize and percdamp are SparseGPT's) serves every method: a key the chosen method does not
have is ignored, as it does not change what that method computes. A key that is no method's setting
is refused.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lp_prune.errors import ConfigError
from lp_prune.pruning.method import PruningMethod
from lp_prune.pruning.registry import UnknownMethod, build_method, method_classes

DECLARED = "__dataclass_fields__"  # a dataclass's fields, its bases' included: the most basic one declares


@dataclass(frozen=True)
class MethodSetting:
    """One flat key: the setting's type and default as its first method declares them, the class that
    declares it (its docstring is the key's help), and the registered methods that have it."""

    name: str
    kind: Any
    default: Any
    owner: type
    readers: tuple[str, ...]


def method_settings() -> dict[str, MethodSetting]:
    """Every registered method's settings by flat key, the built-ins' first."""
    found: dict[str, MethodSetting] = {}
    for method in method_classes():
        hints = typing.get_type_hints(method)
        for item in dataclasses.fields(method):
            if not item.init:
                continue
            known = found.get(item.name)
            if known is None:
                owner = next(cls for cls in reversed(method.__mro__) if item.name in vars(cls).get(DECLARED, {}))
                default = item.default if item.default is not dataclasses.MISSING else None
                found[item.name] = MethodSetting(item.name, hints[item.name], default, owner, (method.name,))
            elif method.name not in known.readers:
                found[item.name] = dataclasses.replace(known, readers=(*known.readers, method.name))
    return found


def with_settings(method: str | PruningMethod, settings: Mapping[str, Any]) -> PruningMethod:
    """The method chosen by name, class path or object, with its own settings from `settings`; the keys
    that are settings of other methods are ignored, and any other key is refused in one line (a method
    unknown here keeps them all: they may be its own)."""
    chosen = build_method(method, settings) if isinstance(method, str) else method
    if isinstance(chosen, UnknownMethod):
        return UnknownMethod(chosen.choice, {**chosen.values, **settings})
    own = {key: value for key, value in settings.items() if key in chosen.settings()}
    if not isinstance(method, str) and own:
        chosen = dataclasses.replace(chosen, **own)
    others = set(settings) - set(own)
    strangers = sorted(others - set(method_settings())) if others else []
    if strangers:
        raise ConfigError(
            f"prune.{strangers[0]} is neither a key of every method nor a setting of a registered method "
            "(see `lp-prune run --help`)"
        )
    return chosen
