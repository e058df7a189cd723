"""Progress saved after every decoder layer, so a killed run resumes from its last finished layer.

`RUN_DIR/progress/layer_NNN.safetensors` holds one finished layer's result: the pruned weights
("weight.<module>"), the packed masks ("mask.<module>") and, in its metadata, the mask shapes and
the metric records. `progress/state.json` says how many layers are done. The layer file is written
before the state that points to it, both atomically, so the state never names a missing or
half-written layer. The inputs of the next layer are not stored: resuming replays the saved layers
(`load_layer_results`), which recomputes them and gives the same bits as the uninterrupted run on CPU.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lp_prune.calibration.observers import StepObserver
from lp_prune.calibration.results import LayerResult, LinearResult, ModuleRecord, StepOutput
from lp_prune.errors import UserError
from lp_prune.models.layers import decoder_layers, layer_prefix, prunable_linears
from lp_prune.pruning.masks import PackedMask
from lp_prune.tracking import atomic_output, read_json, write_json

PROGRESS_DIR = "progress"
STATE_FILE = "state.json"


def progress_dir(run_root: Path) -> Path:
    return run_root / PROGRESS_DIR


def layers_done(run_root: Path) -> int:
    state = progress_dir(run_root) / STATE_FILE
    return int(read_json(state)["layers_done"]) if state.exists() else 0


class LayerCheckpoint(StepObserver):
    """Writes every layer the loop finishes (replayed layers are on disk already)."""

    def __init__(self, run_root: Path) -> None:
        self.folder = progress_dir(run_root)

    def observe(self, trainer: L.Trainer, output: StepOutput) -> None:
        if output.layer is not None and not output.layer.replayed:
            self.save(output.layer)

    def save(self, result: LayerResult) -> None:
        self.folder.mkdir(exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        for linear in result.linears:
            tensors[f"weight.{linear.name}"] = linear.weight.detach().cpu().contiguous()
            tensors[f"mask.{linear.name}"] = linear.mask.bits
        metadata = {
            "shapes": json.dumps({linear.name: list(linear.mask.shape) for linear in result.linears}),
            "records": json.dumps([asdict(record) for record in result.records]),
        }
        with atomic_output(self.folder / layer_file(result.layer)) as tmp:
            save_file(tensors, tmp, metadata=metadata)
        write_json(self.folder / STATE_FILE, {"layers_done": result.layer + 1})


def layer_file(layer: int) -> str:
    return f"layer_{layer:03d}.safetensors"


def load_layer_results(run_root: Path, model: torch.nn.Module) -> list[LayerResult]:
    """The results of the layers an earlier attempt finished, checked against `model`, in layer order."""
    done = layers_done(run_root)
    n_layers = len(decoder_layers(model))
    if done > n_layers:
        raise UserError(f"{run_root}: progress names {done} layers but the model has {n_layers}; wrong run?")
    return [_load_layer(run_root, model, layer) for layer in range(done)]


def _load_layer(run_root: Path, model: torch.nn.Module, layer: int) -> LayerResult:
    with safe_open(progress_dir(run_root) / layer_file(layer), framework="pt") as saved:
        metadata = saved.metadata()
        shapes, records = json.loads(metadata["shapes"]), json.loads(metadata["records"])
        prefix = layer_prefix(model, layer) + "."
        expected = [prefix + name for name in prunable_linears(decoder_layers(model)[layer])]
        if sorted(expected) != sorted(shapes):
            raise UserError(f"{run_root}: saved layer {layer} does not match the model's modules; wrong run?")
        linears = [
            LinearResult(
                name=record["module"],
                weight=saved.get_tensor(f"weight.{record['module']}"),
                mask=PackedMask(saved.get_tensor(f"mask.{record['module']}"), tuple(shapes[record["module"]])),
                record=ModuleRecord(**record),
            )
            for record in records
        ]
    return LayerResult(layer, linears, replayed=True)
