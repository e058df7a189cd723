"""Calibration as a forward-only Lightning loop, one decoder layer at a time.

`trainer.validate(LayerwiseCalibration(...))` walks a schedule of steps, one validation "batch"
each (so Lightning's progress bar shows layer progress):

    for layer i:  collect(i, group 0) ... collect(i, group G-1)  ->  propagate(i)

Before the first step the module captures layer 0's inputs and every layer's call arguments from
the calibration token windows. A collect step runs layer i over all cached inputs while callbacks
record statistics of the group's Linears (and prune them when the step ends). A propagate step runs
the pruned layer once more: its outputs become layer i+1's inputs. No optimizer, no gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from lp_prune.models.layers import (
    LayerInputs,
    capture_layer_inputs,
    decoder_layers,
    layer_prefix,
    prunable_linears,
    run_layer,
    sequential_groups,
)


@dataclass
class Step:
    """One unit of work in the layer schedule."""

    kind: str  # "collect" or "propagate"
    layer: int
    group: int = 0  # index into the layer's groups (true-sequential), 0 otherwise


class LayerwiseCalibration(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        calibration_ids: torch.Tensor,
        batch_size: int = 8,
        true_sequential: bool = False,
        start_layer: int = 0,
    ) -> None:
        super().__init__()
        self.start_layer = start_layer  # > 0 when resuming: earlier layers are pruned already
        self.model = model
        self.calibration_ids = calibration_ids
        self.batch_size = batch_size
        self.layers = decoder_layers(model)
        self.prefixes = [layer_prefix(model, i) for i in range(len(self.layers))]
        self.groups = [sequential_groups(prunable_linears(layer), true_sequential) for layer in self.layers]
        self.inputs: LayerInputs | None = None
        self.pruned_in_step: list = []  # PruneCallback -> PruningMetricsCallback, per collect step

    # --- the schedule -------------------------------------------------------------------------
    def schedule(self) -> list[Step]:
        steps = []
        for layer in range(self.start_layer, len(self.groups)):
            steps += [Step("collect", layer, g) for g in range(len(self.groups[layer]))]
            steps.append(Step("propagate", layer))
        return steps

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.schedule(), batch_size=None, collate_fn=lambda step: step)

    def linears(self, step: Step) -> dict[str, nn.Linear]:
        """The Linears a collect step works on, by full module name (e.g. 'model.layers.3.mlp.up_proj')."""
        layer = self.layers[step.layer]
        modules = prunable_linears(layer)
        return {f"{self.prefixes[step.layer]}.{name}": modules[name] for name in self.groups[step.layer][step.group]}

    # --- the loop -----------------------------------------------------------------------------
    def on_validation_start(self) -> None:
        batches = self.calibration_ids.to(self.device).split(self.batch_size)
        self.inputs = capture_layer_inputs(self.model, batches)
        for layer in range(self.start_layer):  # resuming: recompute inputs through restored layers
            self._propagate(layer)

    def validation_step(self, step: Step, batch_idx: int) -> None:
        if step.kind == "collect":
            layer, kwargs = self.layers[step.layer], self.inputs.kwargs[step.layer]
            for batch, hidden in enumerate(self.inputs.hidden):
                run_layer(layer, hidden, kwargs[batch])
        else:
            self._propagate(step.layer)

    def _propagate(self, index: int) -> None:
        """Run layer `index` on its inputs; outputs replace inputs batch by batch (one copy in memory)."""
        layer, kwargs = self.layers[index], self.inputs.kwargs[index]
        with torch.no_grad():
            for batch, hidden in enumerate(self.inputs.hidden):
                self.inputs.hidden[batch] = run_layer(layer, hidden, kwargs[batch])

    def on_validation_end(self) -> None:
        self.inputs = None  # free the cached activations

    @property
    def calibration_tokens(self) -> int:
        return self.calibration_ids.numel()
