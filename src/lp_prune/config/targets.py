"""Which Linears a run prunes: prune.targets and prune.ignore as module patterns in llm-compressor's
spelling, checked when the config is read and matched against module names and classes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from lp_prune.errors import ConfigError

REGEX_PREFIX = "re:"


def matches(pattern: str, name: str, module: nn.Module) -> bool:
    """Whether a module pattern in llm-compressor's spelling names the module `name`: 're:<regex>' is
    matched from the start of the full module name (re.match); any other pattern is a class name
    ('Linear', also matching subclasses) or the module name, whole or its last dotted parts
    ('down_proj', 'mlp.down_proj')."""
    if pattern.startswith(REGEX_PREFIX):
        return re.match(pattern.removeprefix(REGEX_PREFIX), name) is not None
    if any(cls.__name__ == pattern for cls in type(module).__mro__):
        return True
    return name == pattern or name.endswith("." + pattern)


def check_patterns(patterns: Sequence[str], key: str) -> None:
    """Module patterns are non-empty strings, and every 're:' one is a regular expression."""
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            raise ConfigError(f"{key} holds {pattern!r}; a pattern is a class name, a module name or re:<regex>")
        if pattern.startswith(REGEX_PREFIX):
            try:
                re.compile(pattern.removeprefix(REGEX_PREFIX))
            except re.error as err:
                raise ConfigError(f"{key} '{pattern}' is not a regular expression ({err})") from None


@dataclass(frozen=True)
class LinearTargets:
    """Which Linears of the decoder layers are pruned: those a `targets` pattern names and no `ignore`
    pattern does (patterns as `matches` reads them). The default: every Linear."""

    targets: tuple[str, ...] = ("Linear",)
    ignore: tuple[str, ...] = ()

    def selects(self, name: str, module: nn.Module) -> bool:
        """Whether the module of full name `name` is pruned."""
        return any(matches(p, name, module) for p in self.targets) and not any(
            matches(p, name, module) for p in self.ignore
        )

    def of_layer(self, layer: nn.Module, prefix: str) -> dict[str, nn.Linear]:
        """The pruned Linears of a decoder layer whose full name is `prefix`, by name relative to it (among
        the Linears models.layers.prunable_linears finds)."""
        return {
            name: module
            for name, module in layer.named_modules()
            if isinstance(module, nn.Linear) and self.selects(f"{prefix}.{name}", module)
        }

    def describe(self) -> str:
        """'targets [Linear], ignore [re:.*down_proj]', for messages."""
        return f"targets [{', '.join(self.targets)}], ignore [{', '.join(self.ignore)}]"
