"""The study's internal analyses of saved runs against their dense model.

1. Dense pass, once: per evaluation language, the mean hidden state at every layer (for LSAR) and
   FFN activation counts (for LAPE). Then the LSAR subspace of every layer and the LAPE neurons.
2. Per run: the pruned model (saved weights, or dense + masks) runs beside the dense model on the
   same held-out windows: cumulative SNR, the LSAR split of the error, and pruned activation counts;
   the masks give the overlap of the LAPE neurons with the pruned weights.
3. Mask structure per setting from the packed masks (SparseGPT runs without a saved model count here).

Everything is streamed batch by batch and layer by layer; `analyze()` returns plain numbers.
"""

from __future__ import annotations

import gc
import itertools
import logging
import math
import resource
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from lp_prune.analysis.activations import stream_layers
from lp_prune.analysis.compare import Run, layer_index
from lp_prune.analysis.lape import (
    ActivationCounts,
    LanguageNeurons,
    language_specific_neurons,
    own_language_shift,
    stack_probabilities,
)
from lp_prune.analysis.lsar import LanguageSubspace, MeanAccumulator, SubspaceErrors, language_subspace
from lp_prune.analysis.mask_structure import MaskDisagreement, setting_disagreement
from lp_prune.analysis.snr import CumulativeSNR
from lp_prune.config import LANGUAGES, DataConfig, ModelConfig, check_language
from lp_prune.data import PruningDataModule, TokenWindows
from lp_prune.errors import ConfigError, UserError
from lp_prune.models.ffn import gated_ffn
from lp_prune.models.layers import decoder_layers, layer_prefix, projection
from lp_prune.tracking import iter_masks

log = logging.getLogger(__name__)

FFN_PROJECTIONS = {"gate_proj": 0, "up_proj": 0, "down_proj": 1}  # the dim of a mask that indexes FFN neurons


@dataclass
class AnalyzeOptions:
    languages: list[str] = field(default_factory=lambda: list(LANGUAGES))
    windows: int = 4  # held-out windows per language
    seqlen: int = 128
    batch_size: int = 4
    lsar_rank: int | None = None  # default: number of languages - 1
    lape_top_rate: float = 0.01
    lape_bar: float = 0.95
    include_bos: bool = False

    def validate(self) -> None:
        for lang in self.languages:
            check_language(lang, "--languages")
        if len(set(self.languages)) < 2:
            raise ConfigError("--languages needs at least two languages (LSAR and LAPE compare languages)")
        for key, low in (("windows", 1), ("seqlen", 2), ("batch_size", 1)):
            if getattr(self, key) < low:
                raise ConfigError(f"--{key} must be at least {low}, got {getattr(self, key)}")
        top = len(set(self.languages)) - 1
        if self.lsar_rank is not None and not 1 <= self.lsar_rank <= top:
            raise ConfigError(f"--lsar_rank must lie in [1, {top}] for {top + 1} languages, got {self.lsar_rank}")
        for key in ("lape_top_rate", "lape_bar"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise ConfigError(f"--{key} must lie in (0, 1), got {getattr(self, key)}")


# ---------------------------------------------------------------------------------------------------
# Inputs: runs, models, windows


def run_key(run: Run) -> str:
    return run.path.name


def run_label(run: Run, runs: list[Run]) -> str:
    """Calibration language, with the method when the runs mix methods."""
    methods = {r.summary["method"] for r in runs}
    return run.language if len(methods) == 1 else f"{run.summary['method']} {run.language}"


def shared_model_config(runs: list[Run]) -> ModelConfig:
    """The dense model all runs were pruned from; runs of different models cannot share one analysis."""
    configs = {tuple(sorted(run.config["model"].items())) for run in runs}
    if len(configs) > 1:
        names = sorted({run.config["model"]["name"] for run in runs})
        raise UserError(f"runs of different models (or dtypes) cannot be analysed together: {', '.join(names)}")
    allowed = {f.name for f in fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in runs[0].config["model"].items() if k in allowed})


def can_rebuild(run: Run) -> bool:
    """Saved weights, or masks that alone reproduce the run (Wanda, magnitude)."""
    return (run.path / "model" / "config.json").exists() or run.summary["method"] != "sparsegpt"


def evaluation_windows(
    run: Run, tokenizer: Any, max_positions: int | None, options: AnalyzeOptions
) -> dict[str, TokenWindows]:
    """Held-out windows per language from the runs' text source and split (never calibration text)."""
    data = dict(run.config["data"])
    allowed = {f.name for f in fields(DataConfig)}
    config = DataConfig(**{k: v for k, v in data.items() if k in allowed})
    config.source = "packaged" if config.source == "tokens" else config.source  # token files evaluate on packaged text
    config.eval_languages = list(dict.fromkeys(options.languages))
    config.eval_windows, config.eval_seqlen = options.windows, options.seqlen
    # Only the evaluation part is used; the smallest calibration set (one window of one language) keeps setup cheap.
    config.calibration_language = next(iter(config.calibration_counts()))
    config.nsamples, config.seqlen, config.token_file = 1, 2, None
    module = PruningDataModule(config, tokenizer, max_positions)
    module.setup()
    return module.evaluation


def batches(windows: TokenWindows, batch_size: int) -> list[torch.Tensor]:
    return list(windows.ids.split(batch_size))


# ---------------------------------------------------------------------------------------------------
# Passes


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


# ---------------------------------------------------------------------------------------------------
# Summaries (plain numbers)


def lsar_summary(errors: SubspaceErrors) -> dict[str, list[float]]:
    return {
        "specific": errors.relative_specific(),
        "agnostic": errors.relative_agnostic(),
        "specific_share": errors.specific_share(),
    }


def pooled_errors(per_language: dict[str, SubspaceErrors]) -> SubspaceErrors:
    first = next(iter(per_language.values()))
    pooled = SubspaceErrors(first.total_error.numel())
    for errors in per_language.values():
        pooled.add(errors)
    return pooled


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


def neuron_overlap(run: Run, dense: nn.Module, neurons: LanguageNeurons) -> dict[str, dict[str, float]]:
    """Share of the LAPE neurons' weights the run pruned (gate/up rows, down columns), for the neurons
    of the run's calibration language ("own"), the others, and all; each beside "<group>_layer_average",
    the share the same number of random rows/columns of their layers would have."""
    own = (
        neurons.of_language(run.language)
        if run.language in neurons.languages
        else torch.zeros_like(neurons.layer).bool()
    )
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    names = ffn_mask_names(dense, neurons)
    for name, mask in iter_masks(run.path, list(names)):
        layer, proj = names[name]
        dim = FFN_PROJECTIONS[proj]
        in_layer = neurons.layer == layer
        density, length = float(mask.float().mean()), mask.shape[1 - dim]
        for group, selected in (("own", in_layer & own), ("other", in_layer & ~own), ("all", in_layer)):
            index = neurons.neuron[selected]
            weights = index.numel() * length
            _accumulate(sums[proj][group], float(mask.index_select(dim, index).sum()), weights)
            _accumulate(sums[proj][f"{group}_layer_average"], density * weights, weights)
    return {
        proj: {group: p / n if n else math.nan for group, (p, n) in groups.items()} for proj, groups in sums.items()
    }


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


def structure_summary(
    disagreement: dict[str, MaskDisagreement], neurons: LanguageNeurons | None, n_layers: int
) -> dict[str, Any]:
    """Per projection and layer: disputed rates; row/column unevenness; the LAPE neurons' rows/columns."""
    per_layer: dict[str, list[float]] = defaultdict(lambda: [math.nan] * n_layers)
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    neuron_rates: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"language_specific": [], "all": []})
    modules = {}
    for name, result in disagreement.items():
        proj, layer = projection(name), layer_index(name)
        summary = result.summary()
        modules[name] = summary
        per_layer[proj][layer] = summary["rate"]
        grouped[proj].append(summary)
        if neurons is not None and proj in FFN_PROJECTIONS:
            rates = result.row_rate if FFN_PROJECTIONS[proj] == 0 else result.col_rate
            neuron_rates[proj]["language_specific"] += rates[neurons.in_layer(layer)].tolist()
            neuron_rates[proj]["all"] += rates.tolist()
    keys = ("rate", "pairwise", "row_cv", "col_cv", "row_top_share", "col_top_share")
    return {
        "projection_layer": dict(per_layer),
        "projection": {
            proj: {key: statistics.fmean(s[key] for s in items) for key in keys} for proj, items in grouped.items()
        },
        "ffn_neurons": {
            proj: {group: statistics.fmean(v) if v else math.nan for group, v in rates.items()}
            for proj, rates in neuron_rates.items()
        },
        "modules": modules,
    }


def findings(result: dict[str, Any], runs: list[Run]) -> dict[str, Any]:
    """The study's three claims, checked on these numbers, per setting."""
    out: dict[str, Any] = {}
    by_setting: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run_key(run) in result["snr_db"]:
            by_setting[run.setting].append(run)
    for setting, group in by_setting.items():
        out[setting] = {
            "snr_best_calibration": _best_snr(result["snr_db"], group),
            "lsar_spread": _lsar_spread(result["lsar"]["runs"], group),
            "lape_bins_mean_abs_shift": {
                run.language: [b["mean_abs_shift"] for b in result["lape"]["runs"][run_key(run)]["bins"]]
                for run in group
            },
            "snr_outlier_tokens": _outlier_tokens(result["snr_peak_token_share"], group),
        }
    return out


def _outlier_tokens(shares: dict[str, dict[str, list[float]]], group: list[Run], limit: float = 0.5) -> list:
    """[calibration, evaluation language, layer, share] wherever one token holds most of the SNR noise."""
    return [
        [run.language, lang, layer, share]
        for run in group
        for lang, values in shares[run_key(run)].items()
        for layer, share in enumerate(values)
        if share > limit
    ]


def _best_snr(snr: dict[str, dict[str, list[float]]], group: list[Run]) -> dict[str, dict[str, str]]:
    """Per evaluation language that is also a calibration language: which calibration gives the best SNR."""
    calibrated = {run.language for run in group}
    best = {}
    for lang in sorted(calibrated & set(snr[run_key(group[0])])):
        last = {run.language: snr[run_key(run)][lang][-1] for run in group}
        mean = {run.language: statistics.fmean(snr[run_key(run)][lang]) for run in group}
        best[lang] = {"last_layer": max(last, key=last.get), "mean_over_layers": max(mean, key=mean.get)}
    return best


def _lsar_spread(lsar_runs: dict[str, Any], group: list[Run]) -> dict[str, float]:
    """Coefficient of variation across calibration languages, averaged over layers, for each part."""
    out = {}
    for part in ("specific", "agnostic"):
        curves = [lsar_runs[run_key(run)]["pooled"][part] for run in group]
        cvs = []
        for values in zip(*curves, strict=True):
            mean = statistics.fmean(values)
            cvs.append(statistics.pstdev(values) / mean if mean > 0 else math.nan)
        out[f"{part}_cv"] = statistics.fmean(cvs) if len(group) > 1 else math.nan
    return out


# ---------------------------------------------------------------------------------------------------
# Orchestration


@dataclass
class DenseAnalysis:
    """Everything the run passes compare against: the dense model, its windows and its statistics."""

    model: nn.Module
    windows: dict[str, TokenWindows]
    stats: DenseStatistics
    subspaces: list[LanguageSubspace]
    probs: torch.Tensor  # LAPE activation probabilities [layers, neurons, languages]
    neurons: LanguageNeurons
    edges: list[float]  # dense-p bins of the LAPE neurons


def analyze(
    runs: list[Run],
    options: AnalyzeOptions,
    load_dense: Callable[[ModelConfig], nn.Module] | None = None,
    load_pruned: Callable[[Run], nn.Module] | None = None,
) -> dict[str, Any]:
    """All numbers of the analysis, JSON-ready. Loaders default to lp_prune.models.loading."""
    from lp_prune.models import loading

    options.validate()
    load_pruned = load_pruned or (lambda run: loading.load_run_model(run.path)[0])
    usable = rebuildable_runs(runs)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    dense = prepare_dense(usable[0], shared_model_config(runs), options, load_dense or loading.load_model)
    timings["dense"] = time.perf_counter() - start
    result = base_result(runs, usable, dense, options)
    for run in usable:
        start = time.perf_counter()
        result_for_run(result, run, dense, load_pruned(run), options)
        gc.collect()  # the pruned model goes before the next one loads
        timings[run_key(run)] = time.perf_counter() - start
        log.info("analysed %s in %.0f s", run_key(run), timings[run_key(run)])
    start = time.perf_counter()
    result["mask_structure"] = mask_structure(runs, dense.neurons, len(dense.subspaces))
    timings["mask_structure"] = time.perf_counter() - start
    result["findings"] = findings(result, runs)
    result["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def rebuildable_runs(runs: list[Run]) -> list[Run]:
    usable = [run for run in runs if can_rebuild(run)]
    skipped = [run_key(run) for run in runs if not can_rebuild(run)]
    if not usable:
        raise UserError(
            f"none of the {len(runs)} runs can rebuild its pruned model: SparseGPT runs need --save_model true"
        )
    if skipped:
        log.warning("no pruned model for %d SparseGPT runs (masks only): %s", len(skipped), ", ".join(skipped))
    return usable


def prepare_dense(
    run: Run, model_config: ModelConfig, options: AnalyzeOptions, load_dense: Callable[[ModelConfig], nn.Module]
) -> DenseAnalysis:
    """Windows, the dense model, its statistics, the LSAR subspaces and the LAPE neurons."""
    from lp_prune.models import loading

    languages = list(dict.fromkeys(options.languages))
    tokenizer, hf_config = loading.load_tokenizer_and_config(model_config)
    windows = evaluation_windows(run, tokenizer, loading.max_positions(hf_config), options)
    model = load_dense(model_config)
    stats = dense_pass(model, windows, options)
    probs = stack_probabilities(stats.counts, languages)
    neurons = language_specific_neurons(probs, languages, options.lape_top_rate, options.lape_bar)
    return DenseAnalysis(
        model=model,
        windows=windows,
        stats=stats,
        subspaces=layer_subspaces(stats, languages, options.lsar_rank),
        probs=probs,
        neurons=neurons,
        edges=probability_bins(own_language_shift(probs, probs, neurons).dense),
    )


def base_result(runs: list[Run], usable: list[Run], dense: DenseAnalysis, options: AnalyzeOptions) -> dict[str, Any]:
    languages = list(dense.windows)
    return {
        "model": runs[0].config["model"]["name"],
        "languages": languages,
        "windows": options.windows,
        "seqlen": options.seqlen,
        "include_bos": options.include_bos,
        "tokens_per_language": {lang: int(dense.stats.means[lang].counts[0]) for lang in languages},
        "runs": [
            {
                "key": run_key(run),
                "label": run_label(run, runs),
                "path": str(run.path),
                "setting": run.setting,
                "method": run.summary["method"],
                "calibration_language": run.language,
                "analysed": run in usable,
            }
            for run in runs
        ],
        "snr_db": {},
        "snr_peak_token_share": {},
        "lsar": {
            "rank": dense.subspaces[0].basis.shape[1],
            "singular_values": [s.singular_values.tolist() for s in dense.subspaces],
            "runs": {},
        },
        "lape": lape_neuron_summary(dense.neurons, len(dense.subspaces), dense.edges),
    }


def result_for_run(
    result: dict[str, Any], run: Run, dense: DenseAnalysis, pruned: nn.Module, options: AnalyzeOptions
) -> None:
    """One run's SNR, LSAR and LAPE numbers, added to `result`."""
    stats = run_pass(dense.model, pruned, dense.windows, dense.subspaces, options)
    languages, key = result["languages"], run_key(run)
    result["snr_db"][key] = {lang: stats.snr[lang].db() for lang in languages}
    result["snr_peak_token_share"][key] = {lang: stats.snr[lang].peak_token_share() for lang in languages}
    result["lsar"]["runs"][key] = {
        "pooled": lsar_summary(pooled_errors(stats.errors)),
        "languages": {lang: lsar_summary(stats.errors[lang]) for lang in languages},
    }
    pruned_probs = stack_probabilities(stats.counts, languages)
    result["lape"]["runs"][key] = {
        **shift_summary(dense.probs, pruned_probs, dense.neurons, dense.edges),
        "overlap": neuron_overlap(run, dense.model, dense.neurons),
    }


def lape_neuron_summary(neurons: LanguageNeurons, n_layers: int, edges: list[float]) -> dict[str, Any]:
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
        "runs": {},
    }


def mask_structure(runs: list[Run], neurons: LanguageNeurons, n_layers: int) -> dict[str, Any]:
    """Disagreement between calibration languages, per setting with at least two of them."""
    out = {}
    by_setting: dict[str, dict[str, Run]] = defaultdict(dict)
    for run in runs:
        by_setting[run.setting].setdefault(run.language, run)  # one run per language (the first)
    for setting, by_language in by_setting.items():
        if len(by_language) < 2:
            continue
        ordered = {lang: by_language[lang].path for lang in LANGUAGES if lang in by_language}
        out[setting] = {
            "languages": list(ordered),
            **structure_summary(setting_disagreement(ordered), neurons, n_layers),
        }
    return out
