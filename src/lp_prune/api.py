"""lp_prune from Python: prune a model you hold, or run the whole job from a config.

    import lp_prune
    result = lp_prune.prune(model, tokenizer, method="wanda", sparsity=0.5, calibration="sw")
    result.masks["model.layers.0.mlp.down_proj"]   # bool, True = pruned; the model is pruned in place
    run_dir = lp_prune.run(lp_prune.RunConfig(...))  # what `lp-prune run` does

`prune` runs the same layer-by-layer loop as `lp-prune run` (same statistics, same solves, same
masks for the same calibration windows), without perplexity, run directory or W&B.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lp_prune.config import DataConfig, PruneConfig, RunConfig


@dataclass
class PruneResult:
    """What `prune` did: masks (True = pruned) and per-module records, by full module name."""

    masks: dict[str, torch.Tensor]
    records: list[Any]  # lp_prune.calibration.results.ModuleRecord
    seconds: dict[str, float] = field(default_factory=dict)  # per phase of the pruning loop

    @property
    def sparsity(self) -> float:
        """Share of exact zeros over all pruned Linears."""
        total = sum(r.numel for r in self.records)
        return sum(r.sparsity * r.numel for r in self.records) / total if total else 0.0


def prune(
    model: nn.Module,
    tokenizer_or_ids: Any,
    *,
    method: str = "sparsegpt",
    sparsity: float = 0.5,
    calibration: str = "en",
    nsamples: int = 32,
    seqlen: int = 256,
    seed: int = 0,
    batch_size: int = 8,
    **prune_options: Any,
) -> PruneResult:
    """Prune `model` (an HF causal LM) in place, layer by layer, and say what was pruned.

    tokenizer_or_ids: calibration token ids [n, seqlen] (a LongTensor, used as they are), or the
    model's tokenizer: then `calibration` names a language or mix of the packaged text ("sw",
    "en+sw", "all", "en:16,sw:16"), cut into `nsamples` windows of `seqlen` tokens with `seed`,
    the same windows `lp-prune run` draws.
    prune_options: any other PruneConfig key (pattern="2:4", true_sequential=True,
    local_error="exact", ...); OWL needs its scan pass: use `run` for it.
    """
    import lightning as L

    from lp_prune.calibration.module import CalibrationOptions, LayerwiseCalibration
    from lp_prune.calibration.observers import CalibrationRecorder
    from lp_prune.calibration.pruner import LayerPruner
    from lp_prune.calibration.schedule import Mode

    config = PruneConfig(method=method, sparsity=sparsity, **prune_options)
    config.validate()
    if config.owl:
        raise ValueError("owl needs its own scan pass over the model: use lp_prune.run for OWL")
    ids = calibration_ids(tokenizer_or_ids, calibration, nsamples, seqlen, seed, _max_positions(model))
    options = CalibrationOptions(mode=Mode.of(config.true_sequential, config.single_pass), batch_size=batch_size)
    recorder = CalibrationRecorder()
    module = LayerwiseCalibration(model, ids, options, LayerPruner(config, calibration_tokens=ids.numel()))
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        logger=False,
        callbacks=[recorder],
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        inference_mode=False,
    )
    start = time.perf_counter()
    trainer.validate(module, verbose=False)
    seconds = {**recorder.seconds, "total": time.perf_counter() - start}
    masks = {name: mask.unpack() for name, mask in recorder.masks.items()}
    return PruneResult(masks, recorder.records, seconds)


def calibration_ids(
    tokenizer_or_ids: Any, calibration: str, nsamples: int, seqlen: int, seed: int, max_positions: int | None
) -> torch.Tensor:
    """Token ids [n, seqlen]: the given ids, or windows of the packaged text of a language or mix."""
    if isinstance(tokenizer_or_ids, torch.Tensor):
        ids = tokenizer_or_ids
        if ids.dim() != 2 or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"calibration ids must be integers [n, seqlen], got {ids.dtype} {list(ids.shape)}")
        return ids.long()
    from lp_prune.data import PruningDataModule

    data = DataConfig(calibration_language=calibration, nsamples=nsamples, seqlen=seqlen, eval_windows=0, seed=seed)
    module = PruningDataModule(data, tokenizer_or_ids, max_positions)
    module.setup()
    return module.calibration.ids


def _max_positions(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def run(config: RunConfig, resume: bool = False) -> Path:
    """The whole job of `lp-prune run`: prune, measure, save; returns the run directory."""
    from lp_prune.pipeline import run as run_pipeline

    return run_pipeline(config, resume=resume)
