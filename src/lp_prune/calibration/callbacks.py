"""Callbacks that prune and measure during the layer-by-layer calibration loop.

PruneCallback: on a collect step, hooks the step's Linears to accumulate input statistics; when the
step ends, sums them over processes (data parallel), prunes each Linear (SparseGPT, Wanda or
magnitude) at its layer's sparsity and publishes what it did. On a single-pass step, a hook on each
group's first Linear does the same for that group right before it runs.
OutlierScan: OWL's pass over the unpruned model, one outlier ratio per decoder layer.
PruningMetricsCallback: for every pruned Linear, sparsity and the local error on its calibration
inputs (error, relative error, SNR), logged per layer on a `layer` axis.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from lp_prune.calibration.distributed import broadcast_from_rank_zero, sum_statistics
from lp_prune.calibration.module import LayerwiseCalibration, Step
from lp_prune.config import PruneConfig
from lp_prune.errors import NumericalError
from lp_prune.metrics.pruning_error import local_error, sparsity
from lp_prune.models.layers import InputCollector, projection
from lp_prune.pruning.methods import METHOD_NEEDS_GRAM, PrunedWeight, prune_weight
from lp_prune.pruning.owl import OutlierCount
from lp_prune.pruning.statistics import InputStatistics


@dataclass
class PrunedLinear:
    """What happened to one Linear: handed from the pruning callback to the measuring ones."""

    name: str
    layer: int
    dense_weight: torch.Tensor
    result: PrunedWeight
    statistics: InputStatistics | None


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


class PruneCallback(L.Callback):
    """layer_sparsity: one sparsity per decoder layer (OWL); None prunes every layer to config.sparsity."""

    def __init__(self, config: PruneConfig, layer_sparsity: list[float] | None = None) -> None:
        self.config = config
        self.keep_gram = config.local_error or METHOD_NEEDS_GRAM[config.method]
        self.layer_sparsity = layer_sparsity
        self.masks: dict[str, torch.Tensor] = {}
        self.solve_seconds = 0.0
        self.statistics_seconds = 0.0
        self._collector: InputCollector | None = None
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []  # single-pass steps
        self._pruned: list[PrunedLinear] = []

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        module: LayerwiseCalibration,
        step: Step,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if step.kind == "collect" and self.config.method != "magnitude":
            self._collector = InputCollector(module.linears(step), self.keep_gram)
        elif step.kind == "single":
            self._hook_groups(module, step)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        module: LayerwiseCalibration,
        outputs: Any,
        step: Step,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if step.kind == "single":
            for handle in self._hooks:
                handle.remove()
            self._hooks, module.pruned_in_step, self._pruned = [], self._pruned, []
        if step.kind != "collect":
            return
        statistics = {}
        if self._collector is not None:
            self._collector.remove()
            self.statistics_seconds += self._collector.seconds
            statistics, self._collector = self._collector.statistics, None
        start = time.perf_counter()
        for stats in statistics.values():
            sum_statistics(stats)
        module.pruned_in_step = [
            self._prune(name, linear, step.layer, statistics.get(name)) for name, linear in module.linears(step).items()
        ]
        self.solve_seconds += time.perf_counter() - start

    def _prune(self, name: str, linear: torch.nn.Linear, layer: int, stats: InputStatistics | None) -> PrunedLinear:
        dense = linear.weight.detach()  # never written: the pruned weight replaces it below
        check_finite(dense, f"layer {layer}, module {name}: the weights hold NaN or inf before pruning")
        if stats is not None:
            check_finite(stats.sq_norms, f"layer {layer}, module {name}: its calibration inputs hold NaN or inf")
        result = prune_weight(
            self.config.method,
            dense,
            stats,
            self.sparsity_of(layer),
            self.config.n_m,
            self.config.blocksize,
            self.config.percdamp,
        )
        broadcast_from_rank_zero(result.weight, result.mask.view(torch.uint8))  # identical on every process
        check_finite(result.weight, f"layer {layer}, module {name}: pruning produced NaN or inf weights")
        # A new tensor, not a copy into the old one: a weight memory-mapped from its file would take
        # a copy-on-write fault per page, and the dense weight stays intact for the metrics.
        linear.weight.data = result.weight
        self.masks[name] = result.mask.cpu()
        return PrunedLinear(name, layer, dense, result, stats)

    # --- single pass: each group pruned right before its first Linear runs --------------------------
    def _hook_groups(self, module: LayerwiseCalibration, step: Step) -> None:
        linears, prefix = module.linears(step), module.prefixes[step.layer]
        for group in module.groups[step.layer]:
            members = {f"{prefix}.{name}": linears[f"{prefix}.{name}"] for name in group}
            hook = self._group_hook(members, step.layer)
            self._hooks += [linear.register_forward_pre_hook(hook) for linear in members.values()]

    def _group_hook(self, members: dict[str, torch.nn.Linear], layer: int):
        seen: list[torch.Tensor] = []  # the group's input, once its first Linear has run

        def hook(_linear: torch.nn.Module, args: tuple) -> None:
            if not seen:
                seen.append(args[0])
                self._prune_group(members, args[0].detach(), layer)
            elif args[0] is not seen[0]:
                names = ", ".join(members)
                raise RuntimeError(f"single-pass pruning needs {names} to read one input tensor in one call")

        return hook

    def _prune_group(self, members: dict[str, torch.nn.Linear], x: torch.Tensor, layer: int) -> None:
        """Statistics of the whole calibration batch x (summed over processes), then prune every member."""
        statistics: dict[str, InputStatistics | None] = dict.fromkeys(members)
        if self.config.method != "magnitude":
            start = time.perf_counter()
            collector = InputCollector(members, self.keep_gram, hooks=False)
            for name in members:
                collector.accumulate(name, x)  # one X^T X for the whole group (shared input)
            statistics = collector.statistics
            self.statistics_seconds += time.perf_counter() - start
        start = time.perf_counter()
        for name, linear in members.items():
            if statistics[name] is not None:
                sum_statistics(statistics[name])
            self._pruned.append(self._prune(name, linear, layer, statistics[name]))
        self.solve_seconds += time.perf_counter() - start

    def sparsity_of(self, layer: int) -> float:
        return self.config.sparsity if self.layer_sparsity is None else self.layer_sparsity[layer]


class OutlierScan(L.Callback):
    """OWL's statistics pass (scan steps): the share of outlier Wanda scores in each decoder layer."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.ratios: dict[int, float] = {}
        self._collector: InputCollector | None = None

    def on_validation_batch_start(
        self, trainer: L.Trainer, module: LayerwiseCalibration, step: Step, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if step.kind == "scan":
            self._collector = InputCollector(module.linears(step), keep_gram=False)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        module: LayerwiseCalibration,
        outputs: Any,
        step: Step,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._collector is None:
            return
        self._collector.remove()
        count = OutlierCount()
        for name, linear in module.linears(step).items():
            stats = self._collector.statistics[name]
            sum_statistics(stats)
            count.add(linear.weight, stats.sq_norms)
        self.ratios[step.layer] = count.ratio(self.threshold)
        self._collector = None


def check_finite(tensor: torch.Tensor, message: str) -> None:
    if not torch.isfinite(tensor).all():
        raise NumericalError(message)


class PruningMetricsCallback(L.Callback):
    """Measures each pruned Linear; logs per-layer means and per-projection values on a `layer` axis."""

    def __init__(self) -> None:
        self.records: list[ModuleRecord] = []
        self._layer_records: list[ModuleRecord] = []

    def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Resumed runs: log the layers restored from the checkpoint, so the history is whole."""
        for layer in sorted({r.layer for r in self.records}):
            log_layer(trainer, layer, [r for r in self.records if r.layer == layer])

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        module: LayerwiseCalibration,
        outputs: Any,
        step: Step,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if step.prunes:
            self._layer_records += [self._measure(p) for p in getattr(module, "pruned_in_step", [])]
            module.pruned_in_step = []
        if step.ends_layer and self._layer_records:
            self.records += self._layer_records
            log_layer(trainer, step.layer, self._layer_records)
            self._layer_records = []

    @staticmethod
    def _measure(pruned: PrunedLinear) -> ModuleRecord:
        stats = pruned.statistics
        if stats is not None and stats.gram is not None:
            local = asdict(local_error(pruned.dense_weight, pruned.result.weight, stats.gram, stats.tokens))
        else:  # magnitude pruning sees no data; Wanda without Gram keeps only norms
            local = {"error": float("nan"), "rel_error": float("nan"), "snr_db": float("nan")}
        return ModuleRecord(
            layer=pruned.layer,
            module=pruned.name,
            numel=pruned.dense_weight.numel(),
            sparsity=sparsity(pruned.result.weight),
            dense_zeros=sparsity(pruned.dense_weight),
            solver_loss=pruned.result.solver_loss,
            percdamp=pruned.result.percdamp,
            **local,
        )


def log_layer(trainer: L.Trainer, layer: int, records: list[ModuleRecord]) -> None:
    """One row per layer: per-projection sparsity, relative error and SNR, and layer means."""
    metrics: dict[str, float] = {"layer": layer}
    for record in records:
        proj = projection(record.module)
        metrics[f"prune/sparsity/{proj}"] = record.sparsity
        metrics[f"prune/rel_error/{proj}"] = record.rel_error
        metrics[f"prune/snr_db/{proj}"] = record.snr_db
        metrics[f"prune/error/{proj}"] = record.error
    metrics["prune/layer_sparsity_mean"] = sum(r.sparsity for r in records) / len(records)
    metrics["prune/layer_snr_db_mean"] = sum(r.snr_db for r in records) / len(records)
    for logger in trainer.loggers:
        logger.log_metrics(metrics)


STEP_LABELS = {
    "collect": "collecting statistics",
    "propagate": "propagating",
    "scan": "counting outliers",
    "single": "pruning in one pass",
}


class LayerProgressBar(TQDMProgressBar):
    """Lightning's progress bar, labelled with the decoder layer being pruned."""

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        super().on_validation_batch_start(trainer, module, batch, batch_idx, dataloader_idx)
        if isinstance(batch, Step) and isinstance(module, LayerwiseCalibration):
            what = STEP_LABELS[batch.kind]
            self.val_progress_bar.set_description(f"Layer {batch.layer + 1}/{len(module.layers)} {what}")
        elif hasattr(module, "languages"):
            self.val_progress_bar.set_description(f"Perplexity {module.languages[dataloader_idx]}")
