"""Perplexity per language as a forward-only Lightning loop: one validation dataloader per language."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from lp_prune.config import ModelConfig
from lp_prune.data.datamodule import PruningDataModule
from lp_prune.errors import DataError
from lp_prune.metrics.language_modeling import LanguageModelingMetric, fused_token_nll, token_nll
from lp_prune.models.layers import decoder_layers, final_hidden_states, head_logits, linear_head
from lp_prune.models.offload import streamed_layers
from lp_prune.storage.cache_lock import cache_dir, compute_once, write_to_cache
from lp_prune.storage.files import read_json, write_json

log = logging.getLogger(__name__)


class PerplexityEvaluation(L.LightningModule):
    """`trainer.validate(PerplexityEvaluation(model, languages), datamodule=data)` -> `results` per language.

    The datamodule gives one loader per language, in `languages` order (dataloader_idx i is
    languages[i]); under data parallel each process gets a contiguous share of every language's
    windows (no padding duplicates), and the metrics are sums, reduced over processes when computed.
    offload_layers: the decoder layers stay on the CPU and stream through the device one by one.
    """

    def __init__(self, model: nn.Module, languages: list[str], offload_layers: bool = False) -> None:
        super().__init__()
        if offload_layers:
            object.__setattr__(self, "model", model)  # unregistered: Lightning must not move it whole
        else:
            self.model = model
        self.offload_layers = offload_layers
        self.languages = list(languages)
        self.metrics = nn.ModuleList([LanguageModelingMetric() for _ in self.languages])
        self.results: dict[str, dict[str, float]] = {}
        self._streaming: ExitStack | None = None
        self._head_checked: bool | None = None  # head_logits reproduces the model's own logits

    def on_validation_start(self) -> None:
        if self.offload_layers:
            self._streaming = ExitStack()
            self._streaming.enter_context(streamed_layers(self.model, self.device))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        ids = batch["input_ids"]
        if self._head_checked is None:
            self._head_checked = head_matches_model(self.model, ids[:1])
        head = linear_head(self.model) if self._head_checked else None
        if head is not None:  # body once for the batch, the LM head fused with the cross-entropy
            nll, tokens = fused_token_nll(final_hidden_states(self.model, ids), ids, *head)
        else:
            nll, tokens = token_nll(self.model(input_ids=ids, use_cache=False).logits, ids)
        self.metrics[dataloader_idx].update(nll, tokens, int(batch["n_bytes"].sum()))

    def on_validation_epoch_end(self) -> None:
        self.results = {lang: metric.compute() for lang, metric in zip(self.languages, self.metrics, strict=True)}
        for metric in self.metrics:
            metric.reset()

    def on_validation_end(self) -> None:
        if self._streaming is not None:
            self._streaming.close()
            self._streaming = None


def head_matches_model(model: nn.Module, ids: torch.Tensor) -> bool:
    """Does `head_logits` on the body's output give the model's own last-position logits? (An
    architecture with other post-processing falls back to the full forward, with a warning.)"""
    own = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1]
    ours = head_logits(model, final_hidden_states(model, ids)[:, -1])
    if torch.allclose(own.float(), ours.float(), rtol=1e-4, atol=1e-4):
        return True
    log.warning("%s: fused LM head does not match the model's logits; evaluating with full logits", type(model))
    return False


def evaluate_perplexity(
    model: nn.Module,
    datamodule: PruningDataModule,
    trainer_kwargs: dict,
    offload_layers: bool = False,
    compile_layers: bool = False,
) -> dict[str, dict[str, float]]:
    """Perplexity, NLL per token and bits per byte for every evaluation language of the datamodule."""
    languages = datamodule.eval_language_order
    if not languages:
        return {}
    module = PerplexityEvaluation(model, languages, offload_layers)
    with compiled_layers(model, compile_layers):
        L.Trainer(**trainer_kwargs).validate(module, datamodule=datamodule, verbose=False)
    return module.results


@contextmanager
def compiled_layers(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Within the block every decoder layer runs torch.compile'd (nn.Module.compile), then eager again."""
    layers = decoder_layers(model) if enabled else []
    for layer in layers:
        layer.compile(dynamic=False)
    try:
        yield
    finally:
        for layer in layers:
            layer._compiled_call_impl = None  # nn.Module.compile's wrapper: back to the eager call


def dense_model_digest(model: ModelConfig) -> Any:
    """A sha256 of the dense model's identity: name, dtype, revision and, for a local folder, its
    weight files' mtimes. Each dense cache adds what its evaluation read."""
    digest = hashlib.sha256(json.dumps([model.name, model.dtype, model.revision]).encode())
    folder = Path(model.name)
    if folder.is_dir():
        for weights in sorted(folder.glob("*.safetensors")):
            digest.update(f"{weights.name}:{weights.stat().st_mtime_ns}".encode())
    return digest


def dense_cache_key(model: ModelConfig, windows: dict[str, Any]) -> str:
    """Identifies a dense evaluation: the model (and its files' mtimes if local) and the exact windows."""
    digest = dense_model_digest(model)
    for lang, w in windows.items():
        digest.update(lang.encode())
        digest.update(w.ids.numpy().tobytes())
    return digest.hexdigest()[:24]


def cached_dense_perplexity(
    model_config: ModelConfig,
    windows: dict[str, Any],
    evaluate: Callable[[], dict[str, dict[str, float]]],
    write: bool = True,
    lock: bool = True,
) -> dict[str, dict[str, float]]:
    """The dense model's results depend only on the model and the windows: compute them once.

    Sweeps prune one model many times; every run after the first reads the dense baseline back, and
    runs started together wait for the first one's (storage.cache_lock). Data parallel: rank 0
    writes, and nobody locks (`lock` False), since the evaluation is collective.
    """
    path = cache_dir() / "dense_perplexity" / f"{dense_cache_key(model_config, windows)}.json"
    store = (lambda results: write_cache_entry(path, results)) if write else None
    return compute_once(path, lambda: read_cache_entry(path), evaluate, store, "dense perplexity", lock=lock)


def read_cache_entry(path: Path, what: str = "dense perplexity") -> dict[str, Any] | None:
    """The cache only saves time: a damaged entry costs a warning and a new evaluation, not the run."""
    if not path.is_file():
        return None
    try:
        results = read_json(path)
    except DataError as err:
        log.warning("%s cache entry unreadable, evaluating again: %s", what, err)
        return None
    return results if isinstance(results, dict) else None


def write_cache_entry(path: Path, results: dict[str, Any], what: str = "dense perplexity") -> None:
    write_to_cache(what, path.parent, lambda: write_json(path, results))
