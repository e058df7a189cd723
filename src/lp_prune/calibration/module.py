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
    ) -> None:
        super().__init__()
        self.model = model
        self.calibration_ids = calibration_ids
        self.batch_size = batch_size
        self.layers = decoder_layers(model)
        self.prefixes = [layer_prefix(model, i) for i in range(len(self.layers))]
        self.groups = [sequential_groups(prunable_linears(layer), true_sequential) for layer in self.layers]
        self.inputs: LayerInputs | None = None

    # --- the schedule -------------------------------------------------------------------------
    def schedule(self) -> list[Step]:
        steps = []
        for layer, groups in enumerate(self.groups):
            steps += [Step("collect", layer, g) for g in range(len(groups))]
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

    def validation_step(self, step: Step, batch_idx: int) -> None:
        layer = self.layers[step.layer]
        kwargs = self.inputs.kwargs[step.layer]
        if step.kind == "collect":
            for batch, hidden in enumerate(self.inputs.hidden):
                run_layer(layer, hidden, kwargs[batch])
        else:
            # Outputs replace inputs batch by batch: one layer's activations in memory, not two.
            for batch, hidden in enumerate(self.inputs.hidden):
                self.inputs.hidden[batch] = run_layer(layer, hidden, kwargs[batch])

    def on_validation_end(self) -> None:
        self.inputs = None  # free the cached activations

    @property
    def calibration_tokens(self) -> int:
        return self.calibration_ids.numel()
