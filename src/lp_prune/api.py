"""lp_prune from Python: prune a model you hold, or run the whole job from a config.

    import lp_prune
    result = lp_prune.prune(model, tokenizer, method="wanda", sparsity=0.5, calibration="sw")
    result.masks["model.layers.0.mlp.down_proj"]   # bool, True = pruned; the model is pruned in place
    lp_prune.prune(model, tokenizer, calibration=["my text", ...], ignore=["re:.*down_proj"])
    config = lp_prune.load_config("configs/default.yaml")   # what `lp-prune run --config` builds
    run_dir = lp_prune.run(config)                          # what `lp-prune run` does

`prune` runs the loop `lp-prune run` runs (lp_prune.calibration.loop.PruningLoop, built from the
RunConfig its arguments make: same statistics, same solves, same masks for the same calibration
windows), without perplexity, run directory or W&B. A progress bar counts the decoder layers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lp_prune.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lp_prune.config import DataConfig, RunConfig

DEFAULT_LANGUAGE = "en"  # the calibration language when none is given
DEFAULT_LANGUAGE_WINDOWS = 32  # windows drawn from a language's text when `nsamples` is not given
TEXT_COLUMN = "text"  # the column of a datasets.Dataset that holds the calibration texts


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
    tokenizer: Any = None,
    *,
    calibration: Any = None,
    method: str = "sparsegpt",
    sparsity: float = 0.5,
    targets: Sequence[str] | str = ("Linear",),
    ignore: Sequence[str] | str = (),
    nsamples: int | None = None,
    seqlen: int = 256,
    seed: int = 0,
    batch_size: int = 8,
    languages: Sequence[str] | None = None,
    progress: bool = True,
    **prune_options: Any,
) -> PruneResult:
    """Prune `model` (an HF causal LM) in place, layer by layer, and say what was pruned.

    calibration: what the model reads while it is pruned, one of
      - a language or mix of the packaged text ("sw", "en+sw", "all", "en:16,sw:16"; default en): `nsamples`
        windows (default 32) of `seqlen` tokens drawn with `seed`, the windows `lp-prune run` draws;
      - texts: a list of strings, or a datasets.Dataset with a "text" column. They are tokenized and
        packed into windows of `seqlen` tokens as `lp-prune run` packs its calibration text (back to
        back, BOS first in each window); `nsamples` of them are drawn with `seed` (default: all);
      - token ids: an integer tensor [n, seqlen], used as they are (no tokenizer needed; passing it
        in the tokenizer's place works too).
    targets, ignore: which Linears of the decoder layers are pruned, as llm-compressor names modules:
      a class ("Linear"), a module name or its last parts ("down_proj", "mlp.down_proj"), or
      "re:<regex>" matched from the start of the full module name ("re:.*down_proj"). Default: all.
    languages: with token ids, the language of each window (statistics="balanced" or "weighted"
      weigh windows by it); with a language code they come from `calibration`.
    progress: a progress bar over the decoder layers (Lightning's tqdm bar).
    prune_options: any other PruneConfig key (pattern="2:4", true_sequential=True,
      statistics="balanced", owl=True, ...).
    """
    import torch
    from transformers import PretrainedConfig

    from lp_prune.calibration.loop import PruningLoop, quiet_lightning
    from lp_prune.checks import check_method_fits

    if isinstance(tokenizer, torch.Tensor):  # prune(model, ids): the ids are the calibration
        if calibration is not None:
            raise ConfigError("calibration given twice: token ids in the tokenizer's place, and calibration=")
        tokenizer, calibration = None, tokenizer
    if calibration is None:
        calibration = DEFAULT_LANGUAGE
    prune_options.update(targets=_patterns(targets), ignore=_patterns(ignore))
    config = run_config(method, sparsity, calibration, nsamples, seqlen, seed, batch_size, **prune_options)
    config.prune.validate()
    config.data.validate()
    if isinstance(getattr(model, "config", None), PretrainedConfig):
        check_method_fits(config.prune, model.config)
    ids, window_languages = calibration_windows(
        calibration, tokenizer, config.data, _max_positions(model), languages, text_windows=nsamples
    )
    with quiet_lightning():
        loop = PruningLoop.from_config(config, model, ids, window_languages, progress=progress)
        start = time.perf_counter()
        recorder = loop.run()
    seconds = {**recorder.seconds, "total": time.perf_counter() - start}
    masks = {name: mask.unpack() for name, mask in recorder.masks.items()}
    return PruneResult(masks, recorder.records, seconds, loop.owl)


def run_config(
    method: str,
    sparsity: float,
    calibration: Any,
    nsamples: int | None,
    seqlen: int,
    seed: int,
    batch_size: int,
    **prune_options: Any,
) -> RunConfig:
    """The RunConfig of `prune`'s arguments: what `lp-prune run` would be given for the same pruning
    (one process, nothing measured or saved). `data.calibration_language` is `calibration` when that
    names a language; texts and token ids leave it at its default, unused."""
    from lp_prune.config import DataConfig, PruneConfig, RunConfig

    config = RunConfig()
    config.prune = PruneConfig.of(method=method, sparsity=sparsity, **prune_options)
    config.data = DataConfig(
        nsamples=DEFAULT_LANGUAGE_WINDOWS if nsamples is None else nsamples,
        seqlen=seqlen,
        eval_windows=0,
        seed=seed,
        batch_size=batch_size,
    )
    if isinstance(calibration, str):
        config.data.calibration_language = calibration
    config.eval.perplexity = False
    return config


def calibration_windows(
    calibration: Any,
    tokenizer: Any,
    data: DataConfig,
    max_positions: int | None,
    languages: Sequence[str] | None = None,
    text_windows: int | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """Token ids [n, seqlen] and the language of each window (empty where none is known): the given ids
    (and `languages`, if given), `data.nsamples` windows of the packaged text of a language, or
    `text_windows` windows (None: all) packed from texts."""
    import torch

    if isinstance(calibration, torch.Tensor):
        return _given_ids(calibration, languages)
    if languages is not None:
        raise ConfigError("languages go with token ids; a language code names its own, texts have none")
    if tokenizer is None:
        raise ConfigError("calibration by language or texts needs the model's tokenizer: prune(model, tokenizer, ...)")
    from lp_prune.data.windows import calibration_windows as packed_windows
    from lp_prune.data.windows import check_seqlen

    texts = None if isinstance(calibration, str) else calibration_texts(calibration)
    check_seqlen(data.seqlen, max_positions, "seqlen")
    if texts is None:
        from lp_prune.data import PruningDataModule

        module = PruningDataModule(data, tokenizer, max_positions)
        module.setup()
        return module.calibration.ids, module.calibration_languages
    hint = "give more text, or lower nsamples or seqlen"
    windows = packed_windows(texts, tokenizer, text_windows, data.seqlen, data.seed, name="calibration text", hint=hint)
    return windows.ids, []


def calibration_texts(calibration: Any) -> list[str]:
    """The texts of a list of strings, or of a datasets.Dataset's "text" column."""
    if hasattr(calibration, "column_names"):  # a datasets.Dataset (not imported unless given)
        if TEXT_COLUMN not in calibration.column_names:
            columns = ", ".join(calibration.column_names)
            raise ConfigError(f"the calibration dataset has no '{TEXT_COLUMN}' column (its columns: {columns})")
        texts = list(calibration[TEXT_COLUMN])
    elif isinstance(calibration, Sequence):
        texts = list(calibration)
    else:
        raise ConfigError(
            f"calibration is a {type(calibration).__name__}; give a language code, a list of texts, a "
            "datasets.Dataset with a 'text' column, or token ids [n, seqlen]"
        )
    if not texts:
        raise ConfigError("calibration holds no texts")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"calibration texts must be strings; item {index} is a {type(text).__name__}")
    return texts


def load_config(path: str | Path) -> RunConfig:
    """The RunConfig `lp-prune run --config PATH` builds: the YAML file's keys over the defaults, parsed
    and checked as the command line does (a `configs/...` path names the packaged file unless it exists
    here). As from a --config file there, options that run code (model.trust_remote_code,
    eval.include_path) are not taken from the file: set them on the returned config."""
    from lp_prune.commands.run import load_run_config

    return load_run_config(str(path))


def run(config: RunConfig, resume: bool = False) -> Path:
    """The whole job of `lp-prune run`: prune, measure, save; returns the run directory."""
    from lp_prune.calibration.loop import quiet_lightning
    from lp_prune.pipeline import run as run_pipeline

    with quiet_lightning():
        return run_pipeline(config, resume=resume)


def _given_ids(ids: torch.Tensor, languages: Sequence[str] | None) -> tuple[torch.Tensor, list[str]]:
    import torch

    if ids.dim() != 2 or ids.dtype not in (torch.int32, torch.int64):
        raise ConfigError(f"calibration ids must be integers [n, seqlen], got {ids.dtype} {list(ids.shape)}")
    if languages is not None and len(languages) != len(ids):
        raise ConfigError(f"{len(ids)} calibration windows but {len(languages)} languages")
    return ids.long(), list(languages or [])


def _patterns(patterns: Sequence[str] | str) -> list[str]:
    return [patterns] if isinstance(patterns, str) else list(patterns)


def _max_positions(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)
