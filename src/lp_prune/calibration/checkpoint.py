"""Progress saved after every decoder layer, so a killed run resumes from its last finished layer.

`RUN_DIR/progress/layer_NNN.safetensors` holds the pruned weights ("weight.<module>") and masks
("mask.<module>") of the Linears of layer NNN; `progress/state.json` says how many layers are done
and holds their metric records. The layer file is written before the state that points to it, both
atomically, so the state never names a missing or half-written layer. The inputs of the next layer
are not stored: resuming recomputes them by running the restored pruned layers, which on CPU gives
the same bits as the uninterrupted run.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from safetensors.torch import load_file, save_file

from lp_prune.calibration.callbacks import ModuleRecord, PruneCallback, PruningMetricsCallback
from lp_prune.calibration.module import LayerwiseCalibration, Step
from lp_prune.errors import UserError
from lp_prune.models.layers import decoder_layers, layer_prefix, prunable_linears
from lp_prune.tracking import atomic_output, read_json, write_json

PROGRESS_DIR = "progress"
HOLD_ENV = "LP_PRUNE_HOLD_AFTER_LAYER"  # tests set it to kill a real run at a known layer


def progress_dir(run_root: Path) -> Path:
    return run_root / PROGRESS_DIR


def layers_done(run_root: Path) -> int:
    state = progress_dir(run_root) / "state.json"
    return int(read_json(state)["layers_done"]) if state.exists() else 0


class LayerCheckpoint(L.Callback):
    """After each propagate step: the layer's pruned weights and masks, then the progress state."""

    def __init__(self, run_root: Path, prune: PruneCallback, metrics: PruningMetricsCallback) -> None:
        self.folder = progress_dir(run_root)
        self.prune, self.metrics = prune, metrics

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        module: LayerwiseCalibration,
        outputs: Any,
        step: Step,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not step.ends_layer:
            return
        self.folder.mkdir(exist_ok=True)
        prefix = module.prefixes[step.layer] + "."
        tensors = {}
        for name, linear in prunable_linears(module.layers[step.layer]).items():
            full = prefix + name
            tensors[f"weight.{full}"] = linear.weight.detach().cpu().contiguous()
            if full in self.prune.masks:
                tensors[f"mask.{full}"] = self.prune.masks[full].contiguous()
        with atomic_output(self.folder / f"layer_{step.layer:03d}.safetensors") as tmp:
            save_file(tensors, tmp)
        records = [asdict(r) for r in self.metrics.records]
        write_json(self.folder / "state.json", {"layers_done": step.layer + 1, "records": records})
        if os.environ.get(HOLD_ENV) == str(step.layer):  # testing aid: wait here to be killed
            time.sleep(3600)


def restore(run_root: Path, model: torch.nn.Module, prune: PruneCallback, metrics: PruningMetricsCallback) -> int:
    """Put the saved layers back into `model` and the callbacks; return how many layers are done."""
    done = layers_done(run_root)
    if done == 0:
        return 0
    state = read_json(progress_dir(run_root) / "state.json")
    modules = dict(model.named_modules())
    n_layers = len(decoder_layers(model))
    if done > n_layers:
        raise UserError(f"{run_root}: progress names {done} layers but the model has {n_layers}; wrong run?")
    with torch.no_grad():
        for layer in range(done):
            saved = load_file(progress_dir(run_root) / f"layer_{layer:03d}.safetensors")
            _check_layer(saved, model, layer, run_root)
            for key, tensor in saved.items():
                kind, name = key.split(".", 1)
                if kind == "weight":
                    modules[name].weight.copy_(tensor)
                else:
                    prune.masks[name] = tensor
    metrics.records = [ModuleRecord(**r) for r in state["records"]]
    return done


def _check_layer(saved: dict[str, torch.Tensor], model: torch.nn.Module, layer: int, run_root: Path) -> None:
    prefix = layer_prefix(model, layer) + "."
    expected = {f"weight.{prefix}{name}" for name in prunable_linears(decoder_layers(model)[layer])}
    if not expected <= set(saved):
        raise UserError(f"{run_root}: saved layer {layer} does not match the model's modules; wrong run?")
