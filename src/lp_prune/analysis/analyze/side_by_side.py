"""The dense model and a pruned one, side by side on the same held-out windows, layer by layer.

The dense pass gathers, per evaluation language, the mean hidden state of every layer (LSAR) and
FFN activation counts (LAPE); a run's pass compares its pruned model with the dense one (cumulative
SNR, the LSAR split of the error) and counts the pruned model's activations. Everything is streamed
batch by batch and layer by layer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from lp_prune.analysis.analyze.lape import ActivationCounts
from lp_prune.analysis.analyze.layer_stream import stream_layers
from lp_prune.analysis.analyze.lsar import LanguageSubspace, MeanAccumulator, SubspaceErrors, language_subspace
from lp_prune.analysis.analyze.snr import CumulativeSNR
from lp_prune.analysis.options import AnalyzeOptions
from lp_prune.analysis.runs import Run
from lp_prune.data import PruningDataModule, TokenWindows
from lp_prune.models.ffn import gated_ffn
from lp_prune.models.layers import decoder_layers

log = logging.getLogger(__name__)


def held_out_windows(
    run: Run, tokenizer: Any, max_positions: int | None, options: AnalyzeOptions
) -> dict[str, TokenWindows]:
    """Held-out windows per language from the runs' text source and split (never calibration text)."""
    config = replace(run.config.data)  # a copy: the run's own config stays as it was
    config.source = "packaged" if config.source == "tokens" else config.source  # token files evaluate on packaged text
    config.eval_languages = list(dict.fromkeys(options.languages))
    config.eval_windows, config.eval_seqlen = options.windows, options.seqlen
    config.reference_sets = []  # the analyses are per language
    # Only the evaluation part is used; the smallest calibration set (one window of one language) keeps setup cheap.
    config.calibration_language = next(iter(config.calibration_counts()))
    config.nsamples, config.seqlen, config.token_file = 1, 2, None
    module = PruningDataModule(config, tokenizer, max_positions)
    module.setup()
    return module.evaluation


def batches(windows: TokenWindows, batch_size: int) -> list[torch.Tensor]:
    return list(windows.ids.split(batch_size))


@dataclass
class DenseStatistics:
    means: dict[str, MeanAccumulator]
    counts: dict[str, ActivationCounts]


@dataclass
class RunStatistics:
    snr: dict[str, CumulativeSNR]
    errors: dict[str, SubspaceErrors]
    counts: dict[str, ActivationCounts]


def model_shape(model: nn.Module) -> tuple[int, int, int]:
    """(decoder layers, hidden size, FFN intermediate size)."""
    layers = decoder_layers(model)
    ffn = gated_ffn(layers[0])
    return len(layers), ffn.gate_proj.in_features, ffn.intermediate_size


def dense_pass(dense: nn.Module, windows: dict[str, TokenWindows], options: AnalyzeOptions) -> DenseStatistics:
    n_layers, hidden, inter = model_shape(dense)
    stats = DenseStatistics({}, {})
    first = first_position(options)
    for lang, lang_windows in windows.items():
        means, counts = MeanAccumulator(n_layers, hidden), ActivationCounts(n_layers, inter)
        for step in stream_layers([dense], batches(lang_windows, options.batch_size), first):
            means.update(step.layer, step.hidden[0])
            counts.update(step.layer, step.gate_positive[0])
        stats.means[lang], stats.counts[lang] = means, counts
        log.info("dense statistics: %s done", lang)
    return stats


def run_pass(
    dense: nn.Module,
    pruned: nn.Module,
    windows: dict[str, TokenWindows],
    subspaces: list[LanguageSubspace],
    options: AnalyzeOptions,
) -> RunStatistics:
    n_layers, _, inter = model_shape(dense)
    stats = RunStatistics({}, {}, {})
    first = first_position(options)
    for lang, lang_windows in windows.items():
        snr, errors, counts = CumulativeSNR(n_layers), SubspaceErrors(n_layers), ActivationCounts(n_layers, inter)
        for step in stream_layers([dense, pruned], batches(lang_windows, options.batch_size), first):
            dense_hidden, pruned_hidden = step.hidden
            snr.update(step.layer, dense_hidden, pruned_hidden)
            errors.update(step.layer, subspaces[step.layer], dense_hidden, pruned_hidden)
            counts.update(step.layer, step.gate_positive[1])
        stats.snr[lang], stats.errors[lang], stats.counts[lang] = snr, errors, counts
    return stats


def first_position(options: AnalyzeOptions) -> int:
    return 0 if options.include_bos else 1


def layer_subspaces(dense: DenseStatistics, languages: list[str], rank: int | None) -> list[LanguageSubspace]:
    """The LSAR subspace of every layer from the dense mean hidden states ([d, K] per layer)."""
    means = torch.stack([dense.means[lang].means() for lang in languages], dim=-1)  # [layers, d, K]
    return [language_subspace(layer_means, rank) for layer_means in means]
