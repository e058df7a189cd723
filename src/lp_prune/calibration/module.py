"""Calibration as a forward-only Lightning loop, one decoder layer at a time.

`trainer.validate(LayerwiseCalibration(...))` walks the schedule (`calibration/schedule.py`), one
validation "batch" per step, so Lightning's progress bar shows layer progress. Each step does its
work and returns a `StepOutput`; callbacks only observe those outputs. No optimizer, no gradients.

- capture: layer 0's inputs for this process's calibration windows, and every layer's call arguments
- collect: run layer i over all cached inputs as far as the group's last input, recording input
  statistics; then the pruner prunes the group
- propagate / replay: run the (pruned or restored) layer; its outputs become layer i+1's inputs
- single: one pass through layer i with all windows as one batch; a hook on each group's first
  Linear prunes the group right before it runs
- scan: statistics of the unpruned layer while its outputs move on (OWL's outlier count)

Data parallel (strategy ddp): every process runs the whole schedule on its own contiguous share of
the calibration windows; the pruner sums the statistics over processes before each solve.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from lp_prune.calibration.activations import ActivationStore
from lp_prune.calibration.distributed import sum_statistics
from lp_prune.calibration.pruner import LayerPruner
from lp_prune.calibration.results import LayerResult, LinearResult, StepOutput
from lp_prune.calibration.schedule import Mode, Step, StepKind, build_schedule
from lp_prune.config.targets import LinearTargets
from lp_prune.data.windows import shard_bounds, shard_rows
from lp_prune.errors import ConfigError
from lp_prune.models.layers import (
    InputCollector,
    capture_layer_inputs,
    decoder_layers,
    layer_prefix,
    prunable_linears,
    run_layer,
    sequential_groups,
    to_device,
)
from lp_prune.models.offload import move_all_but_layers
from lp_prune.pruning.owl import OutlierCount
from lp_prune.runtime import release_mapped_weights, trim_heap


@dataclass
class CalibrationOptions:
    """How the layer loop runs (beyond the model, the data and the pruner)."""

    mode: Mode = Mode.TWO_PASS
    batch_size: int = 8  # calibration windows per forward pass (single pass: all of them)
    offload_layers: bool = False  # model on the CPU, the current decoder layer on the device
    activations: str = "device"  # cached layer inputs: "device", "cpu" or "disk"
    activation_dir: Path | None = None  # parent folder of the on-disk activations
    outlier_threshold: float = 5.0  # scan: a Wanda score above this times the layer mean is an outlier
    compile_layers: bool = False  # torch.compile each layer for the passes without hooks (propagate, replay)
    targets: LinearTargets = field(default_factory=LinearTargets)  # which Linears are pruned (prune.targets)


class LayerwiseCalibration(L.LightningModule):
    """`pruner` None: scan mode only. `restored`: layers finished by an earlier attempt, replayed first."""

    def __init__(
        self,
        model: nn.Module,
        calibration_ids: torch.Tensor,
        options: CalibrationOptions,
        pruner: LayerPruner | None = None,
        restored: list[LayerResult] | None = None,
    ) -> None:
        super().__init__()
        if options.mode is not Mode.SCAN and pruner is None:
            raise ValueError(f"mode {options.mode.value} prunes: it needs a LayerPruner")
        self.options = options
        if options.offload_layers:
            object.__setattr__(self, "model", model)  # unregistered: Lightning must not move it to the device
        else:
            self.model = model
        self.calibration_ids = calibration_ids
        self.pruner = pruner
        self.restored = {result.layer: result for result in restored or []}
        self.layers = decoder_layers(model)
        self.prefixes = [layer_prefix(model, i) for i in range(len(self.layers))]
        # The one place that decides which Linears are pruned: prune.targets less prune.ignore.
        self.targeted = [
            options.targets.of_layer(layer, prefix) for layer, prefix in zip(self.layers, self.prefixes, strict=True)
        ]
        if options.mode is not Mode.SCAN and not any(self.targeted):
            names = ", ".join(prunable_linears(self.layers[0]))
            raise ConfigError(
                f"prune {options.targets.describe()} names no Linear of the decoder layers (layer 0 has {names})"
            )
        self.groups = [sequential_groups(linears, options.mode.in_order) for linears in self.targeted]
        self._hidden: ActivationStore | None = None  # current layer's inputs, per batch
        self._kwargs: list[list[dict]] = []  # each layer's call arguments, per batch
        self._layer_linears: list[LinearResult] = []  # pruned so far in the current layer
        self._first_window = 0  # calibration-set index of this process's first window

    def schedule(self) -> list[Step]:
        return build_schedule(self.options.mode, [len(g) for g in self.groups], replayed_layers=len(self.restored))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.schedule(), batch_size=None, collate_fn=lambda step: step)

    def linears(self, layer: int, names: list[str] | None = None) -> dict[str, nn.Linear]:
        """The pruned Linears of a layer (or only `names`, relative to it) by full module name."""
        modules = self.targeted[layer]
        return {f"{self.prefixes[layer]}.{name}": modules[name] for name in names or modules}

    # --- the steps -----------------------------------------------------------------------------
    def validation_step(self, step: Step, batch_idx: int) -> StepOutput:
        output = StepOutput(step)
        run = {
            StepKind.CAPTURE: self._capture,
            StepKind.REPLAY: self._replay,
            StepKind.COLLECT: self._collect,
            StepKind.PROPAGATE: self._propagate,
            StepKind.SINGLE: self._single,
            StepKind.SCAN: self._scan,
        }[step.kind]
        run(step, output)
        if step.ends_layer and self.pruner is not None:  # a layer with no targeted Linear too: checkpoints count it
            output.layer = LayerResult(step.layer, self._layer_linears, replayed=step.kind is StepKind.REPLAY)
            self._layer_linears = []
        return output

    def _capture(self, step: Step, output: StepOutput) -> None:
        """Layer 0's inputs for this process's share of the calibration windows, and all call arguments."""
        with self._timed(output, "capture"):
            rank, world_size = self.global_rank, self.trainer.world_size
            self._first_window = shard_bounds(len(self.calibration_ids), rank, world_size)[0]
            ids = shard_rows(self.calibration_ids, rank, world_size)
            if self.options.offload_layers:
                move_all_but_layers(self.model, self.device)
            body_device = next(self.model.parameters()).device  # embeddings: on the device, or all on the CPU
            self._hidden = ActivationStore(self.options.activations, self.device, self.options.activation_dir)
            one_batch = self.options.mode is Mode.SINGLE_PASS
            batches = ids.to(body_device).split(len(ids) if one_batch else self.options.batch_size)
            captured = capture_layer_inputs(self.model, batches, self._hidden)
            memo: dict = {}  # tensors shared between layers' arguments stay shared
            self._kwargs = [[to_device(kw, self.device, memo) for kw in layer] for layer in captured.kwargs]
            release_mapped_weights()  # the embedding rows just read: the loop never reads them again
        self._load_layer(0)

    def _replay(self, step: Step, output: StepOutput) -> None:
        """A layer saved by an earlier attempt: its weights back into the model, then propagate."""
        result = self.restored[step.layer]
        modules = dict(self.model.named_modules())
        with torch.no_grad():
            for linear in result.linears:
                modules[linear.name].weight.copy_(linear.weight)
        self._layer_linears = list(result.linears)
        self._propagate(step, output)

    def _collect(self, step: Step, output: StepOutput) -> None:
        """Statistics of the group's inputs (the layer runs only as far as the group's last input), then prune."""
        assert self.pruner is not None
        linears = self.linears(step.layer, self.groups[step.layer][step.group])
        statistics = None
        if self.pruner.needs_statistics:
            collector = InputCollector(linears, **self.pruner.statistics_options)
            with self._timed(output, "collect"):
                first = self._first_window
                for batch, hidden in enumerate(self._hidden):
                    collector.run(self.layers[step.layer], hidden, self._kwargs[step.layer][batch], first)
                    first += len(hidden)
            collector.remove()
            trim_heap()  # the pass's freed temporaries, pinned by the small statistics kept between them
            output.seconds["statistics"] = collector.seconds  # part of collect
            statistics = collector.statistics
        with self._timed(output, "solve"):
            self._layer_linears += self.pruner.prune(step.layer, linears, statistics)

    def _propagate(self, step: Step, output: StepOutput) -> None:
        """Run the layer on its inputs; outputs replace inputs batch by batch (one copy in memory)."""
        layer = self.layers[step.layer]
        if self.options.compile_layers and step.kind in (StepKind.PROPAGATE, StepKind.REPLAY):
            layer = torch.compile(layer, dynamic=False)  # hooks of scan / single-pass steps stay eager
        with self._timed(output, "propagate"), torch.no_grad():
            for batch in range(len(self._hidden)):
                self._hidden[batch] = run_layer(layer, self._hidden[batch], self._kwargs[step.layer][batch])
        self._unload_layer(step.layer)
        release_mapped_weights()  # the dense weights' pages: the pruned weights are new tensors
        trim_heap()  # the layer's freed temporaries lie between the kept pruned weights (runtime.py)
        self._load_layer(step.layer + 1)

    def _single(self, step: Step, output: StepOutput) -> None:
        """All windows in one pass; each group is pruned by a hook just before its first Linear runs."""
        handles = []
        for group in self.groups[step.layer]:
            members = self.linears(step.layer, group)
            hook = self._group_hook(step.layer, members, output)
            handles += [linear.register_forward_pre_hook(hook) for linear in members.values()]
        try:
            self._propagate(step, output)
        finally:
            for handle in handles:
                handle.remove()

    def _group_hook(self, layer: int, members: dict[str, nn.Linear], output: StepOutput):
        """A pre-hook for every member: the first call prunes the group on its input (the whole batch)."""
        assert self.pruner is not None
        pruner, seen = self.pruner, []

        def hook(_linear: nn.Module, args: tuple) -> None:
            if seen:
                if args[0] is not seen[0]:
                    names = ", ".join(members)
                    raise RuntimeError(f"single-pass pruning needs {names} to read one input tensor in one call")
                return
            seen.append(args[0])
            statistics = None
            if pruner.needs_statistics:
                collector = InputCollector(members, **pruner.statistics_options, hooks=False)
                collector.first_window = self._first_window  # single pass: all windows in one batch
                with self._timed(output, "statistics"):
                    for name in members:
                        collector.accumulate(name, args[0])  # one X^T X for the whole group (shared input)
                statistics = collector.statistics
            with self._timed(output, "solve"):
                self._layer_linears += pruner.prune(layer, members, statistics)

        return hook

    def _scan(self, step: Step, output: StepOutput) -> None:
        """Squared input norms of every Linear (OWL's outlier share is the layer's, whatever is pruned)
        while the unpruned layer's outputs move on."""
        prefix = self.prefixes[step.layer]
        linears = {f"{prefix}.{name}": linear for name, linear in prunable_linears(self.layers[step.layer]).items()}
        collector = InputCollector(linears, keep_gram=False)
        try:
            self._propagate(step, output)
        finally:
            collector.remove()
        statistics = collector.statistics
        for stats in {id(stats): stats for stats in statistics.values()}.values():  # shared ones once
            sum_statistics(stats)
        count = OutlierCount()
        for name, linear in linears.items():
            count.add(linear.weight, statistics[name].sq_norms)
        output.outlier_ratio = count.ratio(self.options.outlier_threshold)

    # --- bookkeeping ---------------------------------------------------------------------------
    def _load_layer(self, index: int) -> None:
        if self.options.offload_layers and index < len(self.layers):
            self.layers[index].to(self.device)

    def _unload_layer(self, index: int) -> None:
        if self.options.offload_layers:
            self.layers[index].to("cpu")

    def on_validation_end(self) -> None:
        if self._hidden is not None:
            self._hidden.close()  # free the cached activations (and their files)
        self._hidden, self._kwargs = None, []

    @contextmanager
    def _timed(self, output: StepOutput, phase: str) -> Iterator[None]:
        """Add the block's wall time to output.seconds[phase] (CUDA synchronised: queued kernels count)."""
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            output.seconds[phase] = output.seconds.get(phase, 0.0) + time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
