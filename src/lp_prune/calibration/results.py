"""What a calibration step returns: the pruned Linears of a finished layer, timings, outlier ratios.

These are the only things that travel from the loop to its observers (metrics, W&B, checkpoints,
the run's record); observers read them and write nothing back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lp_prune.calibration.schedule import Step
from lp_prune.pruning.grid import QuantGrid
from lp_prune.pruning.masks import PackedMask


@dataclass
class ModuleRecord:
    """Per-module metrics, as saved in summary.json and logged to the per-module table."""

    layer: int
    module: str
    numel: int
    sparsity: float
    dense_zeros: float  # exact zeros before pruning (quantised checkpoints have some)
    error: float
    rel_error: float
    snr_db: float
    solver_loss: float | None
    percdamp: float | None


@dataclass
class LinearResult:
    """One pruned Linear: its new weight (the tensor now in the model), its mask and its record."""

    name: str  # full module name, e.g. 'model.layers.3.mlp.up_proj'
    weight: torch.Tensor
    mask: PackedMask
    record: ModuleRecord
    grid: QuantGrid | None = None  # quantizing methods: the grid of `weight` (CPU tensors)


@dataclass
class LayerResult:
    """Every Linear of one finished decoder layer."""

    layer: int
    linears: list[LinearResult]
    replayed: bool = False  # restored from a checkpoint of an earlier attempt, not computed now

    @property
    def records(self) -> list[ModuleRecord]:
        return [linear.record for linear in self.linears]


@dataclass
class StepOutput:
    """The result of one calibration step (the return value of `validation_step`)."""

    step: Step
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase within the step
    layer: LayerResult | None = None  # set when the step finishes a layer that was pruned or replayed
    outlier_ratio: float | None = None  # scan steps: the layer's share of outlier Wanda scores
