"""The one seam between the layer loop and a pruning algorithm: the `PruningMethod` base class.

A method is a frozen dataclass: its fields are its own settings (SparseGPT's blocksize and percdamp,
GPTQ's bits and group_size, ...), and class-level declarations say what it needs and what it does:

- `name`: how `prune.method` chooses it; `display_name`: how people call it (model cards);
- `statistics`: what the calibration pass must gather for it: the float64 Gram X^T X ("gram"), the
  squared input norms ||X_j||^2 ("norms", always gathered with the Gram), or nothing ("none": the
  method reads no calibration data, so its result is the same whatever the calibration language);
- `default_local_error`: what `prune.local_error: auto` means for it ("exact" when the Gram is there
  anyway, else "sample": exact metrics would cost more than the method);
- `updates_kept_weights`: whether the kept weights change (then masks alone cannot rebuild the model);
- `zeroes`: whether it zeroes weights and reads the sparsity (False for quantization alone: gptq, rtn);
- `quantizes`: whether it rounds weights onto a grid, returned in `PrunedWeight.grid`;
- `structured`: whether it removes whole FFN channels and attention heads (the saved model is cut to
  its smaller shape), with `masked_projections` the projections whose masks hold what it removes;
- `export_format`: how the saved model is stored beside the dense folder (see `ExportFormat`).

It writes `prune`, and where it needs them `validate` (its settings alone), `check` (its settings
against the pattern and the model, before any work) and `solver_bytes` (for the memory estimate).
`capabilities()` gathers the declarations; a run's summary records them with the settings.
Registering a method by name, or choosing it by class path, is `registry.py`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

import torch

from lp_prune.pruning.grid import QuantGrid

Statistics = Literal["gram", "norms", "none"]
LocalError = Literal["exact", "sample"]
# How a method's saved model is stored: "sparse-bitmask" (the dense folder records its sparsity;
# compressed-tensors' bitmask copy on request), "pack-quantized" (a copy of integer codes beside it),
# "shrunk" (the model cut to its smaller shape, no copy), "dense" (the dense folder only).
ExportFormat = Literal["sparse-bitmask", "pack-quantized", "shrunk", "dense"]
STATISTICS: tuple[str, ...] = ("gram", "norms", "none")
# What a method declares as class variables (PruningMethod's), never as settings.
DECLARATIONS = (
    "name",
    "statistics",
    "display_name",
    "default_local_error",
    "updates_kept_weights",
    "zeroes",
    "quantizes",
    "structured",
    "masked_projections",
    "export_format",
)


@dataclass(frozen=True)
class PruneContext:
    """What every method may read besides its own settings and the weights: the shared N:M pattern and
    target sparsity, and where known (the pre-flight check, the layer loop) the model's shape."""

    n_m: tuple[int, int] | None = None
    sparsity: float = 0.5  # the config's target (prune() gets each layer's own, e.g. OWL's)
    # The model's Linear input sizes, so that `check` can refuse sizes that do not fit; empty when unknown.
    input_sizes: tuple[int, ...] = ()
    # The model's attention shape (query heads, key/value heads, head dim): structured methods remove
    # whole heads. None when unknown.
    heads: tuple[int, int, int] | None = None


@dataclass
class GroupInputs:
    """A group's calibration statistics, as its method declared them (None where not gathered)."""

    sq_norms: torch.Tensor | None = None  # ||X_j||^2 per input feature
    gram: torch.Tensor | None = None  # float32 X^T X summed over `samples` rows (read, never modified)
    samples: int = 0  # rows (tokens, or their weight for weighted mixes) behind the sums
    projections: tuple[str, ...] = ()  # the group's projection types ('o_proj', ...), where known


@dataclass(frozen=True)
class Runtime:
    """Thread settings for the two phases of a solve (runtime.py measures why): entered around them."""

    column_loop: Callable[[], AbstractContextManager] = nullcontext
    factorisation: Callable[[], AbstractContextManager] = nullcontext


@dataclass
class PrunedWeight:
    weight: torch.Tensor  # the new weight (same dtype/device as the input)
    mask: torch.Tensor  # True where pruned
    solver_loss: float | None = None  # the method's own error estimate, if it has one
    percdamp: float | None = None  # damping actually used, for methods that damp
    grid: QuantGrid | None = None  # quantizing methods: the grid `weight` lies on (its integer codes' scale)


@dataclass(frozen=True)
class Capabilities:
    """What a method declares, as a run's summary records it and the analyses read it back."""

    display_name: str
    statistics: Statistics | None  # None: not known (a method neither recorded nor registered here)
    zeroes: bool = True
    quantizes: bool = False
    structured: bool = False
    updates_kept_weights: bool = True
    masked_projections: tuple[str, ...] | None = None  # None: every Linear's mask
    export_format: ExportFormat = "sparse-bitmask"

    @property
    def calibrates(self) -> bool:
        """Whether the method reads calibration data (True when not known)."""
        return self.statistics != "none"

    def to_json(self) -> dict[str, Any]:
        record = {field.name: getattr(self, field.name) for field in fields(self)}
        record["masked_projections"] = None if self.masked_projections is None else list(self.masked_projections)
        return {**record, "calibrates": self.calibrates}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Capabilities:
        """The recorded capabilities (keys this version does not know are left out)."""
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        if values.get("masked_projections") is not None:
            values["masked_projections"] = tuple(values["masked_projections"])
        return cls(**values)

    @classmethod
    def unknown(cls, name: str) -> Capabilities:
        """A method neither recorded nor registered here: it zeroes weights and reads calibration data."""
        return cls(display_name=name, statistics=None)


@dataclass(frozen=True)
class PruningMethod:
    """A pruning method: subclass it as a frozen dataclass whose fields are its settings, declare the
    class variables below, write `prune`, and register it (registry.py)."""

    name: ClassVar[str]
    statistics: ClassVar[Statistics]
    display_name: ClassVar[str] = ""  # empty: `name`
    default_local_error: ClassVar[LocalError] = "sample"
    updates_kept_weights: ClassVar[bool] = False
    zeroes: ClassVar[bool] = True
    quantizes: ClassVar[bool] = False
    structured: ClassVar[bool] = False
    masked_projections: ClassVar[tuple[str, ...] | None] = None
    export_format: ClassVar[ExportFormat | None] = None  # None: follows from structured, quantizes, zeroes

    def validate(self) -> None:
        """Refuse settings that are wrong whatever the model: one line (ConfigError), before any work.
        Settings classes extend it with super().validate()."""

    def check(self, context: PruneContext) -> None:
        """Refuse what the pattern, the target or the model's shape does not allow: one line (ConfigError)."""

    def solver_bytes(self, width: int, rows: int) -> int:
        """Working memory of one group's solve beyond its new weights and masks."""
        return rows * width * 4  # the float32 scores of one weight

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        context: PruneContext,
        runtime: Runtime,
    ) -> list[PrunedWeight]:
        """The new weights and their masks for weights that read one input (q/k/v, gate/up, ...)."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The method's own settings, by name, as the config's flat keys spell them."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities(
            display_name=cls.display_name or cls.name,
            statistics=cls.statistics,
            zeroes=cls.zeroes,
            quantizes=cls.quantizes,
            structured=cls.structured,
            updates_kept_weights=cls.updates_kept_weights,
            masked_projections=cls.masked_projections,
            export_format=cls.export_format or derived_export_format(cls),
        )


def derived_export_format(method: type[PruningMethod]) -> ExportFormat:
    if method.structured:
        return "shrunk"
    if method.quantizes:
        return "pack-quantized"
    return "sparse-bitmask" if method.zeroes else "dense"


def zeroed(weight: torch.Tensor, mask: torch.Tensor) -> PrunedWeight:
    """A mask-only method's result: the weight with its pruned entries set to zero."""
    return PrunedWeight(weight.masked_fill(mask, 0), mask)


@dataclass(frozen=True)
class MaskOnlyMethod(PruningMethod):
    """A method that only chooses which weights to zero, one weight at a time: a subclass sets `name`
    and `statistics` and writes `mask`. The kept weights stay as they are, so masks rebuild the model."""

    def mask(self, weight: torch.Tensor, sparsity: float, inputs: GroupInputs, context: PruneContext) -> torch.Tensor:
        """True where `weight` is pruned."""
        raise NotImplementedError

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        context: PruneContext,
        runtime: Runtime,
    ) -> list[PrunedWeight]:
        return [zeroed(weight, self.mask(weight, sparsity, inputs, context)) for weight in weights]
