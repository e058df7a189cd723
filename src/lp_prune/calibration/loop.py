"""The pruning loop, built once from a config: what `lp-prune run` and `lp_prune.prune` both run.

    loop = PruningLoop.from_config(config, model, ids, languages)
    recorder = loop.run()        # OWL's scan where configured, then layer-by-layer pruning
    recorder.masks, recorder.records, loop.owl

From a RunConfig, a model and its calibration windows (with the language of each), `from_config`
derives every piece: the calibration options, the per-window statistics weights
(prune.statistics), the model's attention shape (structured methods), the trainer's settings and
the observers. The host adds only what is its own: loggers, extra callbacks (per-layer
checkpoints), a folder for on-disk activations, the layers a resumed run restores.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from lp_prune.calibration.module import CalibrationOptions, LayerwiseCalibration
from lp_prune.calibration.observers import CalibrationRecorder, LayerProgressBar, PruningMetricsLogger
from lp_prune.calibration.pruner import LayerPruner
from lp_prune.calibration.results import LayerResult
from lp_prune.calibration.schedule import Mode
from lp_prune.checks import attention_heads
from lp_prune.config import RunConfig
from lp_prune.errors import ConfigError
from lp_prune.pruning.owl import owl_sparsities
from lp_prune.pruning.statistics import window_weights

Phase = Callable[[str], AbstractContextManager]  # e.g. PhaseTimer.phase: times the named phase
# Where Lightning's Trainer says what it found ("GPU available: ...", "TPU available: ...", "💡 Tip: ...").
LIGHTNING_INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's banners and its LeafSpec deprecation warning off inside the block (the Python API's
    calls); its warnings and errors, and the progress bars, stay. Logging comes back as it was."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_INFO_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _untimed(name: str) -> AbstractContextManager:
    return nullcontext()


@dataclass
class PruningLoop:
    """Everything the layer loop needs, derived from one config (see `from_config`)."""

    config: RunConfig
    model: nn.Module
    ids: torch.Tensor  # calibration windows [n, seqlen]
    options: CalibrationOptions
    trainer_kwargs: dict[str, Any]  # what every Trainer of the loop starts from
    callbacks: list[L.Callback]  # the pruning pass's observers; `recorder` among them
    recorder: CalibrationRecorder
    weights: torch.Tensor | None  # per window (balanced / weighted statistics); None: pooled
    heads: tuple[int, int, int] | None  # the model's attention shape, for structured methods
    restored: list[LayerResult] = field(default_factory=list)
    progress: bool = True  # Lightning's progress bar over each pass
    owl: dict[str, list[float]] | None = None  # after `run` with prune.owl: outlier ratio and sparsity per layer
    trainer: L.Trainer | None = None  # the pruning pass's, after `run`

    @classmethod
    def from_config(
        cls,
        config: RunConfig,
        model: nn.Module,
        ids: torch.Tensor,
        languages: Sequence[str] = (),
        *,
        loggers: Sequence[Any] = (),
        callbacks: Sequence[L.Callback] = (),
        progress: bool = True,
        activation_dir: Path | None = None,
        restored: list[LayerResult] | None = None,
    ) -> PruningLoop:
        """The loop for `config` on `model` and calibration `ids` ([n, seqlen]); `languages`: one per
        window (needed by prune.statistics balanced and weighted). progress=False: no progress bar."""
        prune = config.prune
        if prune.statistics != "pooled":
            _check_languages(config, ids, languages)
        options = CalibrationOptions(
            mode=Mode.of(prune.true_sequential, prune.single_pass),
            batch_size=config.data.batch_size,
            offload_layers=config.offload_layers,
            activations=config.activations,
            activation_dir=activation_dir,
            outlier_threshold=prune.owl_threshold,
            compile_layers=config.compile_layers,
            targets=prune.linear_targets,
        )
        recorder = CalibrationRecorder()
        observers = [recorder, PruningMetricsLogger(), *([LayerProgressBar()] if progress else []), *callbacks]
        return cls(
            config=config,
            model=model,
            ids=ids,
            options=options,
            trainer_kwargs=trainer_kwargs(config, loggers, progress),
            callbacks=observers,
            recorder=recorder,
            weights=window_weights(list(languages), prune.statistics, prune.language_weights),
            heads=attention_heads(getattr(model, "config", None)),
            restored=list(restored or []),
            progress=progress,
        )

    def pruner(self, layer_sparsity: list[float] | None = None) -> LayerPruner:
        """The layer pruner: the config's method and settings, the model's heads, the window weights."""
        return LayerPruner(self.config.prune, layer_sparsity, self.ids.numel(), self.weights, self.heads)

    def run(self, phase: Phase = _untimed) -> CalibrationRecorder:
        """Prune the model in place (OWL's scan first where configured); `phase` wraps each pass
        ("owl_scan", "prune"), e.g. to time it. Returns the recorder of the pruning pass."""
        if self.config.prune.owl:
            with phase("owl_scan"):
                self.owl = self.scan_owl()
        layer_sparsity = self.owl["sparsity"] if self.owl else None
        module = LayerwiseCalibration(self.model, self.ids, self.options, self.pruner(layer_sparsity), self.restored)
        with phase("prune"):
            self.trainer = L.Trainer(**{**self.trainer_kwargs, "callbacks": self.callbacks})
            self.trainer.validate(module, verbose=False)
        return self.recorder

    def scan_owl(self) -> dict[str, list[float]]:
        """OWL's pass over the unpruned model: outlier ratio per layer -> sparsity per layer."""
        recorder = CalibrationRecorder()
        progress = [LayerProgressBar()] if self.progress else []
        trainer = L.Trainer(**{**self.trainer_kwargs, "callbacks": [recorder, *progress]})
        scan = LayerwiseCalibration(self.model, self.ids, replace(self.options, mode=Mode.SCAN))
        trainer.validate(scan, verbose=False)
        ratios = [recorder.outlier_ratios[layer] for layer in sorted(recorder.outlier_ratios)]
        sparsity = owl_sparsities(ratios, self.config.prune.sparsity, self.config.prune.owl_lambda)
        return {"outlier_ratio": ratios, "sparsity": sparsity}


def trainer_kwargs(config: RunConfig, loggers: Sequence[Any] = (), progress: bool = True) -> dict[str, Any]:
    """The Trainer settings of the loop (and of the pipeline's perplexity passes)."""
    return {
        "accelerator": config.accelerator,
        "devices": config.trainer_devices,
        "num_nodes": config.num_nodes,
        "strategy": config.strategy,
        "use_distributed_sampler": False,  # the calibration schedule is not data; windows are sharded by us
        "logger": list(loggers) or False,
        "inference_mode": False,  # plain no_grad: tensors made during calibration stay usable after
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "enable_progress_bar": progress,
        "callbacks": [LayerProgressBar()] if progress else [],
    }


def _check_languages(config: RunConfig, ids: torch.Tensor, languages: Sequence[str]) -> None:
    """Balanced and weighted statistics weigh each window by its language: every window needs one,
    and weighted needs a share for each language."""
    rule = config.prune.statistics
    if len(languages) != len(ids):
        raise ConfigError(
            f"prune.statistics {rule} weighs each calibration window by its language: "
            f"{len(ids)} windows but {len(languages)} languages"
        )
    missing = [lang for lang in dict.fromkeys(languages) if lang not in config.prune.language_weights]
    if rule == "weighted" and missing:
        raise ConfigError(f"prune.language_weights has no weight for calibration language {', '.join(missing)}")
