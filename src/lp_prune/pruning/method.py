"""The one seam between the layer loop and a pruning algorithm: the `PruningMethod` protocol and its registry.

A method says what it needs and does one thing: prune a group of weights that read the same input.

- `statistics`: what the calibration pass must gather for it: the float64 Gram X^T X ("gram"), the
  squared input norms ||X_j||^2 ("norms", always gathered with the Gram), or nothing ("none").
- `default_local_error`: what `prune.local_error: auto` means for it ("exact" when the Gram is there
  anyway, else "sample": exact metrics would cost more than the method).
- `updates_kept_weights`: whether the kept weights change (then masks alone cannot rebuild the model).
- `solver_bytes(width, rows)`: working memory of one group's solve beyond its new weights and masks.
- `check(settings)`: refuse settings the method cannot honour (one line, before any work).
- `prune(weights, sparsity, inputs, settings, runtime)`: the new weights and their masks.
- `prunes` (optional, True when absent): False for methods that zero nothing and ignore the
  sparsity (quantization: gptq, rtn); see `prunes`.
- `quantizes` (optional, False when absent): True for methods that round onto the prune.bits /
  group_size grid (gptq, rtn, sparsegpt_gptq); see `quantizes`. They return each weight's grid in
  `PrunedWeight.grid`, so the model can be saved as integer codes.
- `structured` (optional, False when absent): True for methods that remove whole FFN channels and
  attention heads (wanda_sp); the saved model is then cut to its smaller shape (models/shrink.py).

Adding a method is one file: a class with these members and `register(TheMethod())`
(`MaskOnlyMethod` supplies all but `mask` for methods that only choose what to zero). Methods that
live outside the package are found through the `lp_prune.methods` entry-point group (the entry
point names a module whose import registers the method), so `prune.method` can name them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Literal, Protocol, runtime_checkable

import torch

from lp_prune.errors import ConfigError
from lp_prune.pruning.grid import QuantGrid

Statistics = Literal["gram", "norms", "none"]
LocalError = Literal["exact", "sample"]
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


@dataclass(frozen=True)
class PruneSettings:
    """What every method may read besides the weights: the N:M pattern, SparseGPT-style solver knobs,
    and the quantization grid (read by quantization methods only)."""

    n_m: tuple[int, int] | None = None
    blocksize: int = 128
    percdamp: float = 0.01
    bits: int = 4
    group_size: int | None = None  # input columns per (scale, zero); None: one per output row
    symmetric: bool = False
    act_order: bool = False
    # The model's Linear input sizes where known (the pre-flight check), so `check` can refuse sizes
    # that do not fit before any work; empty when unknown.
    input_sizes: tuple[int, ...] = ()
    # The model's attention shape (query heads, key/value heads, head dim) where known: structured
    # methods remove whole heads. None when unknown.
    heads: tuple[int, int, int] | None = None
    sparsity: float = 0.5  # the config's target (prune() gets each layer's own, e.g. OWL's)


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


@runtime_checkable
class PruningMethod(Protocol):
    name: str
    statistics: Statistics
    default_local_error: LocalError
    updates_kept_weights: bool

    def solver_bytes(self, width: int, rows: int) -> int: ...

    def check(self, settings: PruneSettings) -> None: ...

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        settings: PruneSettings,
        runtime: Runtime,
    ) -> list[PrunedWeight]: ...


@dataclass
class _Registry:
    methods: dict[str, PruningMethod] = field(default_factory=dict)
    loaded: bool = False  # built-ins and entry points imported


_REGISTRY = _Registry()


def register(method: PruningMethod) -> PruningMethod:
    """Make `method` available as `prune.method: <method.name>`; a second method of one name is refused."""
    if not isinstance(method, PruningMethod):
        raise TypeError(f"{method!r} lacks members of the PruningMethod protocol")
    if method.statistics not in ("gram", "norms", "none"):
        raise TypeError(f"method {method.name}: statistics must be gram, norms or none, not {method.statistics!r}")
    known = _REGISTRY.methods.get(method.name)
    if known is not None and type(known) is not type(method):
        raise ValueError(f"a pruning method named '{method.name}' is already registered ({type(known).__name__})")
    _REGISTRY.methods[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method (tests that register a toy one clean up after themselves)."""
    _REGISTRY.methods.pop(name, None)


def method_names() -> tuple[str, ...]:
    """The built-in methods first, then the others in the order they registered."""
    _load()
    return tuple(
        sorted(
            _REGISTRY.methods, key=lambda name: (name not in BUILT_IN, BUILT_IN.index(name) if name in BUILT_IN else 0)
        )
    )


def get_method(name: str) -> PruningMethod:
    """The registered method called `name`; one line naming the known ones otherwise."""
    _load()
    if name not in _REGISTRY.methods:
        raise ConfigError(f"prune.method '{name}' is not one of: {', '.join(method_names())}")
    return _REGISTRY.methods[name]


def _load() -> None:
    if _REGISTRY.loaded:
        return
    _REGISTRY.loaded = True
    for module in BUILT_IN:
        importlib.import_module(f"lp_prune.pruning.{module}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(entry.value.split(":")[0])


def prunes(method: PruningMethod) -> bool:
    """Whether the method zeroes weights (and reads `sparsity`); quantization methods say False."""
    return bool(getattr(method, "prunes", True))


def zeroes(name: str) -> bool:
    """Whether the method called `name` zeroes weights: False for quantization alone (True when not
    registered here)."""
    _load()
    method = _REGISTRY.methods.get(name)
    return method is None or prunes(method)


def quantizes(name: str) -> bool:
    """Whether the method called `name` rounds weights onto the prune.bits grid (False for a method
    not registered here, e.g. a plug-in of the machine that made a run being compared)."""
    _load()
    method = _REGISTRY.methods.get(name)
    return bool(getattr(method, "quantizes", False))


def calibrates(name: str) -> bool:
    """Whether the method called `name` reads calibration data: False for statistics "none" (RTN,
    magnitude), whose result is the same whatever the calibration language; True when not registered here."""
    _load()
    method = _REGISTRY.methods.get(name)
    return method is None or method.statistics != "none"


def structured(name: str) -> bool:
    """Whether the method called `name` removes whole channels and heads (False when not registered here)."""
    _load()
    return bool(getattr(_REGISTRY.methods.get(name), "structured", False))


def masked_projections(name: str) -> tuple[str, ...] | None:
    """The projections whose masks hold what the method called `name` removes (a structured method's
    removed channels and heads); None: every Linear's mask (and for a method not registered here)."""
    _load()
    return getattr(_REGISTRY.methods.get(name), "masked_projections", None)


def zeroed(weight: torch.Tensor, mask: torch.Tensor) -> PrunedWeight:
    """A mask-only method's result: the weight with its pruned entries set to zero."""
    return PrunedWeight(weight.masked_fill(mask, 0), mask)


class MaskOnlyMethod:
    """A method that only chooses which weights to zero, one weight at a time: a subclass sets `name`
    and `statistics` and writes `mask`. The kept weights stay as they are, so masks rebuild the model."""

    name: str
    statistics: Statistics
    default_local_error: LocalError = "sample"
    updates_kept_weights = False

    def mask(self, weight: torch.Tensor, sparsity: float, inputs: GroupInputs, settings: PruneSettings) -> torch.Tensor:
        """True where `weight` is pruned."""
        raise NotImplementedError

    def solver_bytes(self, width: int, rows: int) -> int:
        return rows * width * 4  # the float32 scores of one weight

    def check(self, settings: PruneSettings) -> None:
        pass

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        settings: PruneSettings,
        runtime: Runtime,
    ) -> list[PrunedWeight]:
        return [zeroed(weight, self.mask(weight, sparsity, inputs, settings)) for weight in weights]
