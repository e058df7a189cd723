"""Progress saved after every decoder layer, so a killed run resumes from its last finished layer.

`RUN_DIR/progress/layer_NNN.safetensors` holds one finished layer's result: the pruned weights
("weight.<module>"), the packed masks ("mask.<module>"), for quantizing methods the grids
("scale.<module>", "zero.<module>", "g_idx.<module>" with act_order groups) and, in its metadata,
the mask shapes, the grids' settings and the metric records. `progress/state.json` says how many
layers are done. The layer file is written before the state that points to it, both atomically, so
the state never names a missing or half-written layer. A symbolic link in progress/'s place or in it
is refused, never written through (storage.files). The inputs of the next layer are not stored:
resuming replays the saved layers (`load_layer_results`), which recomputes them and gives the same
bits as the uninterrupted run on CPU.

Damaged progress (a missing, truncated or garbage layer file; an empty or invalid state.json) costs
only the layers from the first damaged one on: they are recomputed, and a warning says from where.
Saved layers that do not fit the model (other module names or shapes) are another run's: refused.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lp_prune.calibration.observers import StepObserver
from lp_prune.calibration.results import LayerResult, LinearResult, ModuleRecord, StepOutput
from lp_prune.config.targets import LinearTargets
from lp_prune.errors import UserError
from lp_prune.models.layers import decoder_layers, layer_prefix
from lp_prune.pruning.grid import QuantGrid
from lp_prune.pruning.masks import PackedMask
from lp_prune.storage.files import atomic_output, checked_folder, write_json
from lp_prune.tracking.fingerprint import run_key
from lp_prune.tracking.run_dir import RunDirectory

log = logging.getLogger(__name__)

PROGRESS_DIR = "progress"
STATE_FILE = "state.json"


def progress_dir(run_root: Path) -> Path:
    return run_root / PROGRESS_DIR


def layers_done(run_root: Path) -> int:
    """The number of finished layers state.json records (0 without one). An unreadable state counts
    the consecutive layer files present instead: each is written before the state names it."""
    state = progress_dir(run_root) / STATE_FILE
    if not state.exists():
        return 0
    try:
        done = json.loads(state.read_text(encoding="utf-8"))["layers_done"]
        if isinstance(done, int) and not isinstance(done, bool) and done >= 0:
            return done
    except (OSError, ValueError, KeyError, TypeError):
        pass
    counted = 0
    while (progress_dir(run_root) / layer_file(counted)).is_file():
        counted += 1
    log.warning("%s is damaged; counting the saved layer files instead (%d)", state, counted)
    return counted


class DamagedLayer(Exception):
    """A saved layer file that cannot be read back whole."""


class LayerCheckpoint(StepObserver):
    """Writes every layer the loop finishes (replayed layers are on disk already)."""

    def __init__(self, run_root: Path) -> None:
        self.run_root = Path(run_root)
        self.folder = progress_dir(run_root)

    def observe(self, trainer: L.Trainer, output: StepOutput) -> None:
        if output.layer is not None and not output.layer.replayed:
            self.save(output.layer)

    def save(self, result: LayerResult) -> None:
        checked_folder(self.folder, self.run_root)  # never through a link planted in the run folder
        tensors: dict[str, torch.Tensor] = {}
        for linear in result.linears:
            tensors[f"weight.{linear.name}"] = linear.weight.detach().cpu().contiguous()
            tensors[f"mask.{linear.name}"] = linear.mask.bits
            tensors.update(_grid_tensors(linear.name, linear.grid))
        metadata = {
            "shapes": json.dumps({linear.name: list(linear.mask.shape) for linear in result.linears}),
            "records": json.dumps([asdict(record) for record in result.records]),
            "grids": json.dumps({linear.name: _grid_settings(linear.grid) for linear in result.linears if linear.grid}),
            "run": run_key(RunDirectory(self.run_root)),
        }
        with atomic_output(self.folder / layer_file(result.layer)) as tmp:
            save_file(tensors, tmp, metadata=metadata)
        write_json(self.folder / STATE_FILE, {"layers_done": result.layer + 1})


def layer_file(layer: int) -> str:
    return f"layer_{layer:03d}.safetensors"


def load_layer_results(
    run_root: Path, model: torch.nn.Module, targets: LinearTargets | None = None
) -> list[LayerResult]:
    """The results of the layers an earlier attempt finished, checked against the Linears of `model`
    that `targets` prunes (default: all), in layer order, up to the first damaged layer file (that
    layer and the ones after it are recomputed)."""
    done = layers_done(run_root)
    n_layers = len(decoder_layers(model))
    if done > n_layers:
        raise UserError(f"{run_root}: progress names {done} layers but the model has {n_layers}; wrong run?")
    results = []
    for layer in range(done):
        try:
            results.append(_load_layer(run_root, model, layer, targets or LinearTargets()))
        except DamagedLayer as damage:
            log.warning("%s; recomputing from layer %d", damage, layer)
            break
    return results


def _load_layer(run_root: Path, model: torch.nn.Module, layer: int, targets: LinearTargets) -> LayerResult:
    path = progress_dir(run_root) / layer_file(layer)
    try:
        with safe_open(path, framework="pt") as saved:
            metadata = saved.metadata() or {}
            shapes, records = json.loads(metadata["shapes"]), json.loads(metadata["records"])
            grids = json.loads(metadata.get("grids", "{}"))
            tensors = {name: saved.get_tensor(name) for name in saved.keys()}  # noqa: SIM118 - not a dict
    except Exception as error:  # safetensors raises its own types for missing, truncated or garbage files
        raise DamagedLayer(
            f"saved layer {layer} ({path.name}) cannot be read: {' '.join(str(error).split())}"
        ) from None
    written_by = metadata.get("run")
    if written_by and written_by != run_key(RunDirectory(run_root)):
        raise UserError(f"{run_root}: saved layer {layer} ({path.name}) was written by another run; wrong run?")
    modules = _layer_linears(model, layer, targets)
    if sorted(modules) != sorted(shapes):
        raise UserError(f"{run_root}: saved layer {layer} does not match the model's modules; wrong run?")
    for name, module in modules.items():
        expected = tuple(module.weight.shape)
        weight = tensors.get(f"weight.{name}")
        if weight is None or tuple(weight.shape) != expected or tuple(shapes[name]) != expected:
            raise UserError(
                f"{run_root}: saved layer {layer} holds {name} of another shape than {expected}; wrong run?"
            )
    try:
        linears = [
            LinearResult(
                name=record["module"],
                weight=tensors[f"weight.{record['module']}"],
                mask=PackedMask(tensors[f"mask.{record['module']}"], tuple(shapes[record["module"]])),
                record=ModuleRecord(**record),
                grid=_saved_grid(record["module"], grids.get(record["module"]), tensors),
            )
            for record in records
        ]
    except (KeyError, TypeError) as error:
        raise DamagedLayer(f"saved layer {layer} ({path.name}) is incomplete: {error}") from None
    for linear in linears:
        expected = (math.prod(linear.mask.shape) + 7) // 8
        if linear.mask.bits.dtype != torch.uint8 or linear.mask.bits.numel() != expected:
            raise DamagedLayer(
                f"saved layer {layer} ({path.name}): the mask of {linear.name} holds {linear.mask.bits.numel()} "
                f"packed bytes, not {expected}"
            )
    return LayerResult(layer, linears, replayed=True)


def _grid_tensors(name: str, grid: QuantGrid | None) -> dict[str, torch.Tensor]:
    if grid is None:
        return {}
    tensors = {f"scale.{name}": grid.scale.contiguous(), f"zero.{name}": grid.zero.contiguous()}
    if grid.g_idx is not None:
        tensors[f"g_idx.{name}"] = grid.g_idx.contiguous()
    return tensors


def _grid_settings(grid: QuantGrid) -> dict[str, int | bool | None]:
    return {"bits": grid.bits, "symmetric": grid.symmetric, "group_size": grid.group_size}


def _saved_grid(name: str, settings: dict | None, tensors: dict[str, torch.Tensor]) -> QuantGrid | None:
    """A Linear's saved grid (None where its method recorded none)."""
    if settings is None:
        return None
    return QuantGrid(tensors[f"scale.{name}"], tensors[f"zero.{name}"], **settings, g_idx=tensors.get(f"g_idx.{name}"))


def _layer_linears(model: torch.nn.Module, layer: int, targets: LinearTargets) -> dict[str, torch.nn.Module]:
    """The pruned Linears of decoder layer `layer` by full module name."""
    prefix = layer_prefix(model, layer)
    return {
        f"{prefix}.{name}": module for name, module in targets.of_layer(decoder_layers(model)[layer], prefix).items()
    }
