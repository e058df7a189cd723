"""Callbacks that observe the calibration loop: each reads the steps' outputs and keeps its own state.

None of them writes into the module or reads another callback, so their order does not matter.
- CalibrationRecorder: what the run keeps (records, masks, phase timings, outlier ratios).
- PruningMetricsLogger: per-layer metrics to the loggers (W&B) on a `layer` axis.
- LayerProgressBar: Lightning's progress bar, labelled with the layer and what the step does.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf

from lp_prune.calibration.results import ModuleRecord, StepOutput
from lp_prune.calibration.schedule import Step
from lp_prune.models.layers import projection
from lp_prune.pruning.grid import QuantGrid
from lp_prune.pruning.masks import PackedMask


class StepObserver(L.Callback):
    """A callback that reads each calibration step's output (`observe`) and nothing else."""

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if isinstance(outputs, StepOutput):  # perplexity steps run through the same trainer hooks
            self.observe(trainer, outputs)

    def observe(self, trainer: L.Trainer, output: StepOutput) -> None:
        raise NotImplementedError


class CalibrationRecorder(StepObserver):
    """Collects the run's results from the step outputs; only rank 0 keeps the masks and grids."""

    def __init__(self) -> None:
        self.records: list[ModuleRecord] = []
        self.masks: dict[str, PackedMask] = {}
        self.grids: dict[str, QuantGrid] = {}  # quantizing methods: each Linear's grid
        self.seconds: dict[str, float] = {}  # per phase, summed over steps
        self.outlier_ratios: dict[int, float] = {}
        self.replayed_layers = 0

    def observe(self, trainer: L.Trainer, output: StepOutput) -> None:
        for phase, seconds in output.seconds.items():
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        if output.outlier_ratio is not None:
            self.outlier_ratios[output.step.layer] = output.outlier_ratio
        if output.layer is None:
            return
        self.replayed_layers += output.layer.replayed
        self.records += output.layer.records
        if trainer.is_global_zero:
            self.masks.update({linear.name: linear.mask for linear in output.layer.linears})
            self.grids.update({linear.name: linear.grid for linear in output.layer.linears if linear.grid is not None})


class PruningMetricsLogger(StepObserver):
    """One row per finished layer: per-projection sparsity, error, relative error and SNR, layer means."""

    def observe(self, trainer: L.Trainer, output: StepOutput) -> None:
        if output.layer is not None and output.layer.records:  # a layer prune.targets leaves whole has none
            log_layer(trainer, output.layer.layer, output.layer.records)


def log_layer(trainer: L.Trainer, layer: int, records: list[ModuleRecord]) -> None:
    metrics = layer_metrics(layer, records)
    for logger in trainer.loggers:
        logger.log_metrics(metrics)


def layer_metrics(layer: int, records: list[ModuleRecord]) -> dict[str, float]:
    """The history row of one layer: `layer`, then `prune/<metric>/<proj>` and the layer means."""
    metrics: dict[str, float] = {"layer": layer}
    for record in records:
        proj = projection(record.module)
        metrics[f"prune/sparsity/{proj}"] = record.sparsity
        metrics[f"prune/rel_error/{proj}"] = record.rel_error
        metrics[f"prune/snr_db/{proj}"] = record.snr_db
        metrics[f"prune/error/{proj}"] = record.error
    metrics["prune/layer_sparsity_mean"] = sum(r.sparsity for r in records) / len(records)
    metrics["prune/layer_snr_db_mean"] = sum(r.snr_db for r in records) / len(records)
    return metrics


class LayerProgressBar(TQDMProgressBar):
    """Lightning's progress bar, labelled with the decoder layer and what its step does (calibration) or
    with the language (perplexity) from its first frame, never "Validation DataLoader N": calibration
    and evaluation run as Lightning validation loops, but the user is pruning, not validating. Over
    calibration it counts finished decoder layers (a layer takes several steps)."""

    _kind = "Validation"

    @property
    def validation_description(self) -> str:  # the bar's label before its first step
        return self._kind

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._kind = (
            "Pruning" if hasattr(module, "layers") else "Perplexity" if hasattr(module, "languages") else "Validation"
        )
        super().on_validation_start(trainer, module)

    def on_validation_batch_start(
        self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        bar = self.val_progress_bar
        if self.has_dataloader_changed(dataloader_idx):  # Lightning's reset, without its generic label
            layers = len(getattr(module, "layers", ()))
            steps = convert_inf(self.total_val_batches_current_dataloader)
            bar.reset(total=layers if isinstance(batch, Step) and layers else steps)
            bar.initial = 0
        bar.set_description(self.step_label(module, batch, dataloader_idx))

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not isinstance(batch, Step):
            super().on_validation_batch_end(trainer, module, outputs, batch, batch_idx, dataloader_idx)
        elif batch.ends_layer and not self.val_progress_bar.disable:
            self.val_progress_bar.n = batch.layer + 1
            self.val_progress_bar.refresh()

    @staticmethod
    def step_label(module: L.LightningModule, batch: Any, dataloader_idx: int) -> str:
        if isinstance(batch, Step):
            layers = len(getattr(module, "layers", ())) or "?"
            return f"Layer {batch.layer + 1}/{layers} {batch.kind.value}"
        if hasattr(module, "languages"):
            return f"Perplexity {module.languages[dataloader_idx]}"
        return f"Validation {dataloader_idx}"
