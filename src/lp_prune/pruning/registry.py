"""Choosing a pruning method: by its registered name (`prune.method: sparsegpt`) or by class path
(`prune.method: my_package.methods.MyMethod`), with its settings from the config's flat keys.

- `register(TheMethod)` (also a class decorator) makes a `PruningMethod` subclass available under its
  `name`; the built-ins register themselves in their modules, and installed packages through the
  `lp_prune.methods` entry-point group (the entry point names a module whose import registers them).
- A class path names a `PruningMethod` subclass in a module that is imported already (by the script
  that calls lp_prune, or by an entry point): a config never makes lp_prune import code.
- `build_method(choice, values)`: the method with those of `values` that are its settings (the others
  are left out: configs/default.yaml's blocksize means nothing to Wanda). A name unknown here gives an
  `UnknownMethod` holding the name and values, so that a run made elsewhere can still be read;
  `method_named` refuses it in one line instead.
- `recorded_capabilities(name, record)`: a summary's record of them, or for a summary that predates
  it, the capabilities of the method registered under that name here.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar

from lp_prune.errors import ConfigError
from lp_prune.pruning.method import DECLARATIONS, STATISTICS, Capabilities, MaskOnlyMethod, PruningMethod

BUILT_IN = (
    "sparsegpt",
    "wanda",
    "magnitude",
    "gptq",
    "rtn",
    "sparsegpt_gptq",
    "wanda_sp",
)  # modules of lp_prune.pruning that register one method each
ENTRY_POINT_GROUP = "lp_prune.methods"
DEFAULT_METHOD = "sparsegpt"

Method = TypeVar("Method", bound=type[PruningMethod])


@dataclass
class _Registry:
    methods: dict[str, type[PruningMethod]] = field(default_factory=dict)
    loaded: bool = False  # built-ins and entry points imported


_REGISTRY = _Registry()


def register(method: Method) -> Method:
    """Make the class `method` available as `prune.method: <method.name>`; another class under a taken
    name is refused (the same class again, e.g. its module imported twice, replaces it)."""
    check_method_class(method)
    known = _REGISTRY.methods.get(method.name)
    if known is not None and qualified_name(known) != qualified_name(method):
        raise ValueError(f"a pruning method named '{method.name}' is already registered ({known.__name__})")
    _REGISTRY.methods[method.name] = method
    return method


def check_method_class(method: Any) -> None:
    """A registrable method: a PruningMethod dataclass with a name, its statistics, and a `prune`."""
    if not (isinstance(method, type) and issubclass(method, PruningMethod) and is_dataclass(method)):
        raise TypeError(f"{method!r} is not a PruningMethod dataclass (subclass lp_prune.pruning.PruningMethod)")
    name = getattr(method, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{method.__name__} has no name (a class variable: name = 'my_method')")
    if getattr(method, "statistics", None) not in STATISTICS:
        raise TypeError(f"method {name}: statistics must be gram, norms or none, not {method.statistics!r}")
    declared_as_settings = [item.name for item in fields(method) if item.name in DECLARATIONS]
    if declared_as_settings:
        raise TypeError(
            f"method {name}: {declared_as_settings[0]} is declared, not a setting: write it without a type "
            "annotation (or as a ClassVar)"
        )
    writes_masks = issubclass(method, MaskOnlyMethod) and method.mask is not MaskOnlyMethod.mask
    if method.prune is PruningMethod.prune or (issubclass(method, MaskOnlyMethod) and not writes_masks):
        raise TypeError(f"method {name} lacks its prune (or, for a MaskOnlyMethod, its mask)")


def unregister(name: str) -> None:
    """Remove a method (tests that register a toy one clean up after themselves)."""
    _REGISTRY.methods.pop(name, None)


def qualified_name(method: type[PruningMethod]) -> str:
    """'package.module.Class': the class path that chooses `method`."""
    return f"{method.__module__}.{method.__qualname__}"


def method_classes() -> tuple[type[PruningMethod], ...]:
    """The registered methods: the built-ins first, then the others in the order they registered."""
    _load()

    def order(name: str) -> tuple[bool, int]:
        return name not in BUILT_IN, BUILT_IN.index(name) if name in BUILT_IN else 0

    return tuple(_REGISTRY.methods[name] for name in sorted(_REGISTRY.methods, key=order))


def method_names() -> tuple[str, ...]:
    return tuple(method.name for method in method_classes())


def method_class(choice: str) -> type[PruningMethod] | None:
    """The class a registered name or a class path names; None when there is none here."""
    _load()
    if choice in _REGISTRY.methods:
        return _REGISTRY.methods[choice]
    module_name, _, class_name = choice.replace(":", ".").rpartition(".")
    found = getattr(sys.modules.get(module_name), class_name, None) if module_name else None
    if not (isinstance(found, type) and issubclass(found, PruningMethod)):
        return None
    try:
        check_method_class(found)
    except TypeError as err:
        raise ConfigError(f"prune.method {choice}: {err}") from None
    return found


def choice_of(method: PruningMethod) -> str:
    """What `prune.method` says to choose `method`: its registered name, else its class path (for an
    `UnknownMethod`, the name it was read with)."""
    if isinstance(method, UnknownMethod):
        return method.choice
    kind = type(method)
    return kind.name if method_class(kind.name) is kind else qualified_name(kind)


def build_method(choice: str, values: Mapping[str, Any] | None = None) -> PruningMethod:
    """The method `choice` names, with those of `values` that are its settings; an `UnknownMethod`
    when `choice` names none here."""
    values = dict(values or {})
    method = method_class(choice)
    if method is None:
        return UnknownMethod(choice, values)
    own = {item.name for item in fields(method) if item.init}
    return method(**{key: value for key, value in values.items() if key in own})


def method_named(choice: str, values: Mapping[str, Any] | None = None) -> PruningMethod:
    """`build_method`, refusing in one line a choice that names no method here."""
    method = build_method(choice, values)
    check_known(method)
    return method


def check_known(method: PruningMethod) -> None:
    if isinstance(method, UnknownMethod):
        raise ConfigError(
            f"prune.method '{method.choice}' is not one of: {', '.join(method_names())} "
            "(nor the class path of an imported PruningMethod)"
        )


def capabilities_named(name: str) -> Capabilities:
    """The capabilities of the method registered as `name` here; `Capabilities.unknown` otherwise."""
    method = method_class(name)
    return Capabilities.unknown(name) if method is None else method.capabilities()


def recorded_capabilities(name: str, record: Any) -> Capabilities:
    """Capabilities as a run's summary records them; for a summary that predates them (or a record this
    version cannot read), those of the method registered as `name` here."""
    if isinstance(record, dict):
        try:
            return Capabilities.from_json(record)
        except TypeError:
            pass
    return capabilities_named(name)


@dataclass(frozen=True)
class UnknownMethod(PruningMethod):
    """A method this machine does not have, read from a run made elsewhere: the name or class path it
    was chosen by, and its settings as recorded. It prunes nothing; `method_named` refuses it."""

    statistics = "none"
    choice: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.choice

    def settings(self) -> dict[str, Any]:
        return dict(self.values)

    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return Capabilities.unknown(self.choice)


def _load() -> None:
    if _REGISTRY.loaded:
        return
    _REGISTRY.loaded = True
    for module in BUILT_IN:
        importlib.import_module(f"lp_prune.pruning.{module}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(entry.value.split(":")[0])
