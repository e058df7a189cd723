"""Calibration as a forward-only Lightning loop, one decoder layer at a time.

`trainer.validate(LayerwiseCalibration(...))` walks a schedule of steps, one validation "batch"
each (so Lightning's progress bar shows layer progress):

    for layer i:  collect(i, group 0) ... collect(i, group G-1)  ->  propagate(i)
    scan mode:    scan(i) (statistics recorded while the unpruned layer's outputs move on)
    single pass:  single(i) (each group pruned by a hook right before it runs; outputs move on)

Before the first step the module captures layer 0's inputs and every layer's call arguments from
the calibration token windows. A collect step runs layer i over all cached inputs while callbacks
record statistics of the group's Linears (and prune them when the step ends). A propagate step runs
the pruned layer once more: its outputs become layer i+1's inputs. No optimizer, no gradients.

Data parallel (strategy ddp): every process runs the whole schedule on its own contiguous share of
the calibration windows; the callbacks sum the statistics over processes before pruning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from lp_prune.calibration.activations import ActivationStore
from lp_prune.models.layers import (
    capture_layer_inputs,
    decoder_layers,
    layer_prefix,
    prunable_linears,
    run_layer,
    sequential_groups,
    stop_after_inputs,
    to_device,
)
from lp_prune.models.mapped_weights import release_mapped_weights
from lp_prune.models.offload import move_all_but_layers


@dataclass
class Step:
    """One unit of work in the layer schedule."""

    kind: str  # "collect", "propagate", "scan" (statistics while propagating) or "single" (prune while propagating)
    layer: int
    group: int = 0  # index into the layer's groups (true-sequential), 0 otherwise

    @property
    def prunes(self) -> bool:
        """Linears are pruned in this step."""
        return self.kind in ("collect", "single")

    @property
    def ends_layer(self) -> bool:
        """The layer is finished (pruned, outputs propagated) when this step ends."""
        return self.kind in ("propagate", "single")


@dataclass
class CalibrationOptions:
    """How the layer loop runs (beyond the model and the data)."""

    batch_size: int = 8  # calibration windows per forward pass
    true_sequential: bool = False
    start_layer: int = 0  # > 0 when resuming: earlier layers are pruned already
    scan: bool = False  # statistics of the unpruned model only (OWL's outlier pass): no pruning steps
    single_pass: bool = False  # one step per layer: all windows in one batch, groups pruned by hooks
    offload_layers: bool = False  # model on the CPU, the current decoder layer on the device
    activations: str = "device"  # cached layer inputs: "device", "cpu" or "disk"
    activation_dir: Path | None = None  # parent folder of the on-disk activations
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase, filled during the run


class LayerwiseCalibration(L.LightningModule):
    def __init__(
        self, model: nn.Module, calibration_ids: torch.Tensor, options: CalibrationOptions | None = None
    ) -> None:
        super().__init__()
        self.options = options or CalibrationOptions()
        if self.options.offload_layers:
            object.__setattr__(self, "model", model)  # unregistered: Lightning must not move it to the device
        else:
            self.model = model
        self.calibration_ids = calibration_ids
        self.layers = decoder_layers(model)
        self.prefixes = [layer_prefix(model, i) for i in range(len(self.layers))]
        in_order = self.options.true_sequential or self.options.single_pass
        self.groups = [sequential_groups(prunable_linears(layer), in_order) for layer in self.layers]
        self.hidden: ActivationStore | None = None  # current layer's inputs, per batch
        self.kwargs: list[list[dict]] = []  # each layer's call arguments, per batch
        self.pruned_in_step: list = []  # PruneCallback -> PruningMetricsCallback, per collect step

    # --- the schedule -------------------------------------------------------------------------
    def schedule(self) -> list[Step]:
        layers = range(self.options.start_layer, len(self.groups))
        if self.options.scan or self.options.single_pass:
            return [Step("scan" if self.options.scan else "single", layer) for layer in layers]
        steps = []
        for layer in layers:
            steps += [Step("collect", layer, g) for g in range(len(self.groups[layer]))]
            steps.append(Step("propagate", layer))
        return steps

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.schedule(), batch_size=None, collate_fn=lambda step: step)

    def linears(self, step: Step) -> dict[str, nn.Linear]:
        """The Linears a step works on, by full module name (e.g. 'model.layers.3.mlp.up_proj')."""
        modules = prunable_linears(self.layers[step.layer])
        names = self.groups[step.layer][step.group] if step.kind == "collect" else list(modules)
        return {f"{self.prefixes[step.layer]}.{name}": modules[name] for name in names}

    # --- the loop -----------------------------------------------------------------------------
    def on_validation_start(self) -> None:
        with self._timed("capture"):
            self._capture_inputs()
        self._load_layer(0)
        for layer in range(self.options.start_layer):  # resuming: recompute inputs through restored layers
            self._propagate(layer)

    def _capture_inputs(self) -> None:
        """Layer 0's inputs for this process's share of the calibration windows, and all call arguments."""
        ids = shard_rows(self.calibration_ids, self.global_rank, self.trainer.world_size)
        if self.options.offload_layers:
            move_all_but_layers(self.model, self.device)
        body_device = next(self.model.parameters()).device  # embeddings: on the device, or all on the CPU
        self.hidden = ActivationStore(self.options.activations, self.device, self.options.activation_dir)
        batch_size = len(ids) if self.options.single_pass else self.options.batch_size
        captured = capture_layer_inputs(self.model, ids.to(body_device).split(batch_size), self.hidden)
        memo: dict = {}  # tensors shared between layers' arguments stay shared
        self.kwargs = [[to_device(kw, self.device, memo) for kw in layer] for layer in captured.kwargs]
        release_mapped_weights()  # the embedding rows just read: the loop never reads them again

    def validation_step(self, step: Step, batch_idx: int) -> None:
        if step.kind == "collect":  # statistics only: the layer runs as far as the group's last input
            with self._timed("collect"), torch.no_grad(), stop_after_inputs(self.linears(step).values()) as run:
                for batch, hidden in enumerate(self.hidden):
                    run(self.layers[step.layer], hidden, self.kwargs[step.layer][batch])
        else:  # propagate; scan and single: hooks record statistics (and prune) while the outputs move on
            self._propagate(step.layer)

    def _propagate(self, index: int) -> None:
        """Run layer `index` on its inputs; outputs replace inputs batch by batch (one copy in memory)."""
        with self._timed("propagate"), torch.no_grad():
            for batch in range(len(self.hidden)):
                self.hidden[batch] = run_layer(self.layers[index], self.hidden[batch], self.kwargs[index][batch])
        self._unload_layer(index)
        release_mapped_weights()  # the dense weights' pages: the pruned weights are new tensors
        self._load_layer(index + 1)

    def _load_layer(self, index: int) -> None:
        if self.options.offload_layers and index < len(self.layers):
            self.layers[index].to(self.device)

    def _unload_layer(self, index: int) -> None:
        if self.options.offload_layers:
            self.layers[index].to("cpu")

    def on_validation_end(self) -> None:
        if self.hidden is not None:
            self.hidden.close()  # free the cached activations (and their files)
        self.hidden, self.kwargs = None, []

    def _timed(self, phase: str) -> _PhaseTimer:
        return _PhaseTimer(self.options.seconds, phase, self.device)

    @property
    def calibration_tokens(self) -> int:
        return self.calibration_ids.numel()


def shard_rows(rows: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank `rank`'s contiguous share of the rows (data-parallel calibration); all rows when alone."""
    if world_size <= 1:
        return rows
    if rows.shape[0] < world_size:
        raise ValueError(f"{rows.shape[0]} calibration windows cannot be shared by {world_size} processes")
    return rows.tensor_split(world_size)[rank]


class _PhaseTimer:
    """Adds a block's wall time to seconds[phase] (synchronising CUDA so queued kernels are counted)."""

    def __init__(self, seconds: dict[str, float], phase: str, device: torch.device) -> None:
        self.seconds, self.phase, self.device = seconds, phase, device

    def __enter__(self) -> None:
        self._sync()
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._sync()
        self.seconds[self.phase] = self.seconds.get(self.phase, 0.0) + time.perf_counter() - self.start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
