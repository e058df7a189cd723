"""How pruning moved the LAPE language-specific neurons: activation-probability shifts on their own
language, and their overlap with the pruned weights (read from a run's masks).

The shifts are reported in bins of the neurons' dense own-language p (quantile thirds), and claim C6
reads the lowest one as the "low-probability" neurons. Two conditions make that reading unsafe,
and each is logged and recorded in the lape section of analysis.json (`warnings`, beside
`low_bin_edges`, `low_bin_wide` and `tokens_below_minimum`):
- the lowest bin reaches above p = LOW_BIN_MAX_UPPER (0.5): it then holds neurons that fire on most
  of their language's tokens, so it is not a low-probability bin (the edges are quantiles of the
  selected neurons' p, which on little text can all lie high);
- fewer than MIN_LAPE_TOKENS (2500) tokens per language: the binomial standard error of one p,
  sqrt(p (1 - p) / n), then exceeds 0.01 at p = 0.5 (0.022 at the default 4 windows x 127 tokens).
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lp_prune.analysis.analyze.lape import LanguageNeurons, own_language_shift
from lp_prune.analysis.runs import Run
from lp_prune.models.layers import decoder_layers, layer_prefix, projection
from lp_prune.tracking import iter_masks

log = logging.getLogger(__name__)

FFN_PROJECTIONS = {"gate_proj": 0, "up_proj": 0, "down_proj": 1}  # the dim of a mask that indexes FFN neurons
LOW_BIN_MAX_UPPER = 0.5  # the lowest dense-p bin must end at or below this p to count as low-probability
MIN_LAPE_TOKENS = 2500  # tokens per language for a standard error of p of at most 0.01


def probability_bins(values: torch.Tensor, n_bins: int = 3) -> list[float]:
    """Quantile edges of the dense own-language p of the LAPE neurons (low / middle / high thirds)."""
    if values.numel() == 0:
        return [0.0, 1.0]
    inner = torch.quantile(values.double(), torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)[1:-1])
    return [0.0, *inner.tolist(), 1.0]


def shift_summary(
    dense_probs: torch.Tensor, pruned_probs: torch.Tensor, neurons: LanguageNeurons, edges: list[float]
) -> dict[str, Any]:
    """How pruning moved the activation probability of the LAPE neurons on their own language."""
    own = own_language_shift(dense_probs, pruned_probs, neurons)
    by_language = defaultdict(list)
    for lang, shift in zip(own.language, own.shift.tolist(), strict=True):
        by_language[lang].append(shift)
    all_dense, all_shift = dense_probs.flatten(), (pruned_probs - dense_probs).flatten().abs()
    bins = []
    for low, high in bin_ranges(edges):
        inside = _in_range(own.dense, low, high)
        stats = _shift_stats(own.shift[inside], own.dense[inside], {"low": low, "high": high})
        # Baseline: every neuron and language with a dense p in the same range.
        stats["all_neurons_mean_abs_shift"] = float(all_shift[_in_range(all_dense, low, high)].mean())
        bins.append(stats)
    return {
        "mean_shift": {lang: statistics.fmean(v) for lang, v in by_language.items()},
        "mean_abs_shift": {lang: statistics.fmean(abs(x) for x in v) for lang, v in by_language.items()},
        "relative_shift": _relative_by_language(own),
        "bins": bins,
        "all": _shift_stats(own.shift, own.dense, {}),
        "all_neurons_mean_abs_shift": float(all_shift.mean()),
        "per_layer_mean_abs_shift": [
            float(own.shift[own.layer == layer].abs().mean()) if bool((own.layer == layer).any()) else math.nan
            for layer in range(dense_probs.shape[0])
        ],
    }


def bin_ranges(edges: list[float]) -> list[tuple[float, float]]:
    return list(itertools.pairwise(edges))


def _in_range(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """low <= v < high; the last bin (high = 1) includes 1."""
    return (values >= low) & ((values < high) if high < 1.0 else (values <= high))


def _shift_stats(shift: torch.Tensor, dense: torch.Tensor, extra: dict[str, float]) -> dict[str, float]:
    """Mean p' - p, mean |p' - p| and mean |p' - p| / p (a change of 0.01 matters more at p = 0.02)."""
    if shift.numel() == 0:
        return {**extra, "n": 0, "mean_shift": math.nan, "mean_abs_shift": math.nan, "mean_rel_abs_shift": math.nan}
    positive = dense > 0
    relative = (shift[positive].abs() / dense[positive]).mean() if bool(positive.any()) else torch.tensor(math.nan)
    return {
        **extra,
        "n": shift.numel(),
        "mean_shift": float(shift.mean()),
        "mean_abs_shift": float(shift.abs().mean()),
        "mean_rel_abs_shift": float(relative),
    }


def _relative_by_language(own: Any) -> dict[str, float]:
    """Mean of (p' - p) / p per language: a change of 0.01 matters more for a neuron at p = 0.02."""
    ratios = defaultdict(list)
    for lang, dense, shift in zip(own.language, own.dense.tolist(), own.shift.tolist(), strict=True):
        if dense > 0:
            ratios[lang].append(shift / dense)
    return {lang: statistics.fmean(v) for lang, v in ratios.items()}


def neuron_overlap(run: Run, dense: nn.Module, neurons: LanguageNeurons) -> dict[str, dict[str, Any]]:
    """Share of the LAPE neurons' weights the run pruned (gate/up rows, down columns), for the neurons
    of the run's calibration language ("own"), the others, and all; each beside "<group>_layer_average",
    the share the same number of random rows/columns of their layers would have. "languages" holds the
    same two numbers for each language's neurons ({lang: {"removed", "layer_average"}}): what one
    calibration does to every language's neurons, so runs of different calibrations can be compared."""
    own = (
        neurons.of_language(run.calibration)
        if run.calibration in neurons.languages
        else torch.zeros_like(neurons.layer).bool()
    )
    groups = {"own": own, "other": ~own, "all": torch.ones_like(own)}
    groups |= {f"language:{lang}": neurons.of_language(lang) for lang in neurons.languages}
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    names = ffn_mask_names(dense, neurons)
    for name, mask in iter_masks(run.path, list(names)):
        layer, proj = names[name]
        dim = FFN_PROJECTIONS[proj]
        in_layer = neurons.layer == layer
        density, length = float(mask.float().mean()), mask.shape[1 - dim]
        for group, members in groups.items():
            index = neurons.neuron[in_layer & members]
            weights = index.numel() * length
            _accumulate(sums[proj][group], float(mask.index_select(dim, index).sum()), weights)
            _accumulate(sums[proj][f"{group}_layer_average"], density * weights, weights)
    return {proj: _overlap_shares(cells, neurons.languages) for proj, cells in sums.items()}


def _overlap_shares(cells: Mapping[str, list[float]], languages: list[str]) -> dict[str, Any]:
    """Pruned / total per group; the per-language groups nested under "languages"."""
    share = {group: p / n if n else math.nan for group, (p, n) in cells.items()}
    out: dict[str, Any] = {group: v for group, v in share.items() if not group.startswith("language:")}
    out["languages"] = {
        lang: {"removed": share[f"language:{lang}"], "layer_average": share[f"language:{lang}_layer_average"]}
        for lang in languages
    }
    return out


def _accumulate(cell: list[float], pruned: float, count: float) -> None:
    cell[0] += pruned
    cell[1] += count


def ffn_mask_names(model: nn.Module, neurons: LanguageNeurons) -> dict[str, tuple[int, str]]:
    """Full mask names of the gate/up/down projections of the layers holding LAPE neurons -> (layer, proj)."""
    layers = decoder_layers(model)
    names = {}
    for layer in sorted(set(neurons.layer.tolist())):
        prefix = layer_prefix(model, layer)
        for name, module in layers[layer].named_modules():
            if isinstance(module, nn.Linear) and projection(name) in FFN_PROJECTIONS:
                names[f"{prefix}.{name}"] = (layer, projection(name))
    return names


def lape_checks(edges: list[float], tokens_per_language: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Whether the LAPE bins can be read as the module docstring says: the lowest bin's edges and
    whether it is too wide, the languages below MIN_LAPE_TOKENS (None: token counts not given), and a
    warning per failed condition. Each warning is logged."""
    low, high = edges[0], edges[1]
    few = (
        None
        if tokens_per_language is None
        else {lang: int(n) for lang, n in tokens_per_language.items() if n < MIN_LAPE_TOKENS}
    )
    warnings = []
    if high > LOW_BIN_MAX_UPPER:
        warnings.append(
            f"the lowest LAPE bin spans dense p from {low:.2f} to {high:.2f}, above {LOW_BIN_MAX_UPPER}: "
            "it is not a low-probability bin"
        )
    if few:
        listed = ", ".join(f"{lang} {n}" for lang, n in few.items())
        warnings.append(
            f"LAPE counted fewer than {MIN_LAPE_TOKENS} tokens per language ({listed}): "
            "its activation probabilities are noisy (more --windows or a longer --seqlen)"
        )
    for warning in warnings:
        log.warning(warning)
    return {
        "low_bin_edges": [low, high],
        "low_bin_wide": high > LOW_BIN_MAX_UPPER,
        "min_tokens_per_language": MIN_LAPE_TOKENS,
        "tokens_below_minimum": few,
        "warnings": warnings,
    }


def lape_neuron_summary(
    neurons: LanguageNeurons,
    n_layers: int,
    edges: list[float],
    tokens_per_language: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The lape section of analysis.json before the runs: the neurons, the bins and their checks
    (the token check needs `tokens_per_language`, the tokens LAPE counted per language)."""
    return {
        "n_neurons": len(neurons),
        "bar": neurons.bar,
        "per_language": {lang: int(neurons.of_language(lang).sum()) for lang in neurons.languages},
        "per_layer": torch.bincount(neurons.layer, minlength=n_layers).tolist(),
        "neurons": [
            [layer, neuron, [lang for lang, m in zip(neurons.languages, member, strict=True) if m]]
            for layer, neuron, member in zip(
                neurons.layer.tolist(), neurons.neuron.tolist(), neurons.member.tolist(), strict=True
            )
        ],
        "dense_p_edges": edges,
        **lape_checks(edges, tokens_per_language),
        "runs": {},
    }
