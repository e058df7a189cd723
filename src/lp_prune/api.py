"""lp_prune from Python: prune a model you hold, or run the whole job from a config.

    import lp_prune
    result = lp_prune.prune(model, tokenizer, method="wanda", sparsity=0.5, calibration="sw")
    result.masks["model.layers.0.mlp.down_proj"]   # bool, True = pruned; the model is pruned in place
    run_dir = lp_prune.run(lp_prune.RunConfig(...))  # what `lp-prune run` does

`prune` runs the loop `lp-prune run` runs (lp_prune.calibration.loop.PruningLoop, built from the
RunConfig its arguments make: same statistics, same solves, same masks for the same calibration
windows), without perplexity, run directory or W&B.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
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
    owl: dict[str, list[float]] | None = None  # with owl=True: outlier ratio and sparsity per layer

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
    languages: Sequence[str] | None = None,
    **prune_options: Any,
) -> PruneResult:
    """Prune `model` (an HF causal LM) in place, layer by layer, and say what was pruned.

    tokenizer_or_ids: calibration token ids [n, seqlen] (a LongTensor, used as they are), or the
    model's tokenizer: then `calibration` names a language or mix of the packaged text ("sw",
    "en+sw", "all", "en:16,sw:16"), cut into `nsamples` windows of `seqlen` tokens with `seed`,
    the same windows `lp-prune run` draws.
    languages: with token ids, the language of each window (statistics="balanced" or "weighted"
    weigh windows by it); with a tokenizer they come from `calibration`.
    prune_options: any other PruneConfig key (pattern="2:4", true_sequential=True,
    statistics="balanced", owl=True, ...).
    """
    from transformers import PretrainedConfig

    from lp_prune.calibration.loop import PruningLoop
    from lp_prune.checks import check_method_fits

    config = run_config(method, sparsity, calibration, nsamples, seqlen, seed, batch_size, **prune_options)
    config.prune.validate()
    if isinstance(getattr(model, "config", None), PretrainedConfig):
        check_method_fits(config.prune, model.config)
    ids, window_languages = calibration_windows(tokenizer_or_ids, config.data, _max_positions(model), languages)
    loop = PruningLoop.from_config(config, model, ids, window_languages, progress=False)
    start = time.perf_counter()
    recorder = loop.run()
    seconds = {**recorder.seconds, "total": time.perf_counter() - start}
    masks = {name: mask.unpack() for name, mask in recorder.masks.items()}
    return PruneResult(masks, recorder.records, seconds, loop.owl)


def run_config(
    method: str,
    sparsity: float,
    calibration: str,
    nsamples: int,
    seqlen: int,
    seed: int,
    batch_size: int,
    **prune_options: Any,
) -> RunConfig:
    """The RunConfig of `prune`'s arguments: what `lp-prune run` would be given for the same pruning
    (one process, nothing measured or saved)."""
    config = RunConfig()
    config.prune = PruneConfig.of(method=method, sparsity=sparsity, **prune_options)
    config.data = DataConfig(
        calibration_language=calibration,
        nsamples=nsamples,
        seqlen=seqlen,
        eval_windows=0,
        seed=seed,
        batch_size=batch_size,
    )
    config.eval.perplexity = False
    return config


def calibration_windows(
    tokenizer_or_ids: Any, data: DataConfig, max_positions: int | None, languages: Sequence[str] | None = None
) -> tuple[torch.Tensor, list[str]]:
    """Token ids [n, seqlen] and the language of each window: the given ids (and `languages`, if
    given), or windows of the packaged text of `data.calibration_language`."""
    if isinstance(tokenizer_or_ids, torch.Tensor):
        ids = tokenizer_or_ids
        if ids.dim() != 2 or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"calibration ids must be integers [n, seqlen], got {ids.dtype} {list(ids.shape)}")
        if languages is not None and len(languages) != len(ids):
            raise ValueError(f"{len(ids)} calibration windows but {len(languages)} languages")
        return ids.long(), list(languages or [])
    if languages is not None:
        raise ValueError("languages go with token ids; with a tokenizer, `calibration` names them")
    from lp_prune.data import PruningDataModule

    module = PruningDataModule(data, tokenizer_or_ids, max_positions)
    module.setup()
    return module.calibration.ids, module.calibration_languages


def _max_positions(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def run(config: RunConfig, resume: bool = False) -> Path:
    """The whole job of `lp-prune run`: prune, measure, save; returns the run directory."""
    from lp_prune.pipeline import run as run_pipeline

    return run_pipeline(config, resume=resume)
