"""Perplexity per language as a forward-only Lightning loop: one validation dataloader per language."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from lp_prune.metrics.perplexity import LanguageModelingMetric, token_nll


class PerplexityEvaluation(L.LightningModule):
    """`trainer.validate(PerplexityEvaluation(model, langs), datamodule=dm)` -> `results` per language."""

    def __init__(self, model: nn.Module, languages: list[str]) -> None:
        super().__init__()
        self.model = model
        self.languages = languages
        self.metrics = nn.ModuleList([LanguageModelingMetric() for _ in languages])
        self.results: dict[str, dict[str, float]] = {}

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        ids = batch["input_ids"]
        logits = self.model(input_ids=ids, use_cache=False).logits
        nll, tokens = token_nll(logits, ids)
        self.metrics[dataloader_idx].update(nll, tokens, int(batch["n_bytes"].sum()))

    def on_validation_epoch_end(self) -> None:
        self.results = {
            lang: metric.compute() for lang, metric in zip(self.languages, self.metrics, strict=True)
        }
        for metric in self.metrics:
            metric.reset()


def evaluate_perplexity(
    model: nn.Module, datamodule: L.LightningDataModule, trainer_kwargs: dict
) -> dict[str, dict[str, float]]:
    """Perplexity, NLL per token and bits per byte for every evaluation language of the datamodule."""
    languages = datamodule.eval_language_order
    if not languages:
        return {}
    module = PerplexityEvaluation(model, languages)
    L.Trainer(**trainer_kwargs).validate(module, datamodule=datamodule, verbose=False)
    return module.results
