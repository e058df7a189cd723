"""Names a package exports but imports only on first use, so `lp-prune --help` loads no torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], module_of: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's `__getattr__` and `__dir__`: `module_of` maps each exported name to the module that
    defines it; a name is imported on first use and kept in the package's `namespace` from then on."""

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(module_of[name]), name)
        namespace[name] = value  # found once; later look-ups do not come back here
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *module_of})

    return __getattr__, __dir__
