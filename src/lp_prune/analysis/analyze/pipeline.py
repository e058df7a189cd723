"""The study's internal analyses of saved runs against their dense model: the orchestration.

1. Dense pass, once: per evaluation language, the mean hidden state at every layer (for LSAR) and
   FFN activation counts (for LAPE). Then the LSAR subspace of every layer and the LAPE neurons.
2. Per run: the pruned model (saved weights, or dense + masks) runs beside the dense model on the
   same held-out windows: cumulative SNR, the LSAR split of the error, and pruned activation counts;
   the masks give the overlap of the LAPE neurons with the pruned weights.
3. Mask structure per setting from the packed masks (SparseGPT runs without a saved model count here).

Everything is streamed batch by batch and layer by layer; `analyze()` returns plain numbers, with
`claim_numbers()` per setting: what claims C2, C5 and C6 are judged on. The passes live in
side_by_side.py, the per-analysis summaries in lsar.py, lape_shifts.py and mask_structure.py, the
report in report.py and plots.py.
"""

from __future__ import annotations

import gc
import logging
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import astuple, dataclass, replace
from typing import Any

import torch
from torch import nn

from lp_prune.analysis.analyze.lape import (
    LanguageNeurons,
    language_specific_neurons,
    own_language_shift,
    stack_probabilities,
)
from lp_prune.analysis.analyze.lape_shifts import lape_neuron_summary, neuron_overlap, probability_bins, shift_summary
from lp_prune.analysis.analyze.lsar import LanguageSubspace, lsar_summary, pooled_errors
from lp_prune.analysis.analyze.mask_structure import mask_structure
from lp_prune.analysis.analyze.side_by_side import (
    DenseStatistics,
    dense_pass,
    held_out_windows,
    layer_subspaces,
    run_pass,
)
from lp_prune.analysis.options import AnalyzeOptions
from lp_prune.analysis.result import AnalysisResult
from lp_prune.analysis.runs import Run
from lp_prune.config import ModelConfig
from lp_prune.data import TokenWindows
from lp_prune.errors import UserError

log = logging.getLogger(__name__)


def run_key(run: Run) -> str:
    return run.path.name


def run_labels(runs: list[Run]) -> dict[str, str]:
    """Each run's label by run key: its calibration recipe (with the method when the runs mix methods),
    and for repeats of one recipe in one setting their draw, "en #0", "en #1": '#' and the run's
    data.seed, with its seed after a dot where the repeats share a data.seed ("en #0.1")."""
    mixed = len({run.summary.method for run in runs}) > 1
    base = {run_key(run): f"{run.summary.method} {run.recipe}" if mixed else run.recipe for run in runs}
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.setting, base[run_key(run)])].append(run)
    labels = dict(base)
    for repeats in (group for group in groups.values() if len(group) > 1):
        shared_data_seed = len({run.config.data.seed for run in repeats}) < len(repeats)
        for run in repeats:
            data_seed, seed = run.calibration_seed
            draw = f"{data_seed}.{seed}" if shared_data_seed else f"{data_seed}"
            labels[run_key(run)] = f"{base[run_key(run)]} #{draw}"
    return labels


def shared_model_config(runs: list[Run]) -> ModelConfig:
    """The dense model all runs were pruned from; runs of different models cannot share one analysis."""
    if len({astuple(run.config.model) for run in runs}) > 1:
        names = sorted({run.config.model.name for run in runs})
        raise UserError(f"runs of different models (or dtypes) cannot be analysed together: {', '.join(names)}")
    return runs[0].config.model


def can_rebuild(run: Run) -> bool:
    """Saved weights, or masks that alone reproduce the run (Wanda, magnitude)."""
    return (run.path / "model" / "config.json").exists() or not run.capabilities.updates_kept_weights


def claim_numbers(result: AnalysisResult, runs: list[Run]) -> dict[str, Any]:
    """Per setting, numbers the analysis report lists beside the verdicts (result.findings): LAPE
    shifts per dense-p bin and where one token holds most of the SNR noise. The verdicts themselves
    come from the per-run numbers (lp_prune.analysis.compare.claims_analysis)."""
    out: dict[str, Any] = {}
    by_setting: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if run_key(run) in result.snr_db:
            by_setting[run.setting].append(run)
    for setting, group in by_setting.items():
        out[setting] = {
            "lape_bins_mean_abs_shift": {  # by run: two draws of one language are two entries
                run_key(run): [b["mean_abs_shift"] for b in result.lape["runs"][run_key(run)]["bins"]] for run in group
            },
            "snr_outlier_tokens": _outlier_tokens(result.snr_peak_token_share, group),
        }
    return out


def _outlier_tokens(shares: dict[str, dict[str, list[float]]], group: list[Run], limit: float = 0.5) -> list:
    """[calibration, evaluation language, layer, share] wherever one token holds most of the SNR noise."""
    return [
        [run.calibration, lang, layer, share]
        for run in group
        for lang, values in shares[run_key(run)].items()
        for layer, share in enumerate(values)
        if share > limit
    ]


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
) -> AnalysisResult:
    """All numbers of the analysis. Loaders default to lp_prune.models.loading."""
    from lp_prune.models import loading

    options.validate()
    trust = options.trust_remote_code  # this command line's, never a run's config.yaml (config.code_options)
    load_pruned = load_pruned or (
        lambda run: loading.load_run_model(run.path, full_shape=True, trust_remote_code=trust)[0]
    )
    usable = rebuildable_runs(runs)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model_config = replace(shared_model_config(runs), trust_remote_code=trust)
    dense = prepare_dense(usable[0], model_config, options, load_dense or loading.load_model)
    timings["dense"] = time.perf_counter() - start
    result = base_result(runs, usable, dense, options)
    for run in usable:
        start = time.perf_counter()
        result_for_run(result, run, dense, load_pruned(run), options)
        gc.collect()  # the pruned model goes before the next one loads
        timings[run_key(run)] = time.perf_counter() - start
        log.info("analysed %s in %.0f s", run_key(run), timings[run_key(run)])
    start = time.perf_counter()
    result.mask_structure = mask_structure(runs, dense.neurons, len(dense.subspaces))
    timings["mask_structure"] = time.perf_counter() - start
    result.findings = claim_numbers(result, runs)
    result.timings_s = {k: round(v, 2) for k, v in timings.items()}
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
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
    windows = held_out_windows(run, tokenizer, loading.max_positions(hf_config), options)
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


def base_result(runs: list[Run], usable: list[Run], dense: DenseAnalysis, options: AnalyzeOptions) -> AnalysisResult:
    languages = list(dense.windows)
    labels = run_labels(runs)
    return AnalysisResult(
        model=runs[0].config.model.name,
        languages=languages,
        windows=options.windows,
        seqlen=options.seqlen,
        include_bos=options.include_bos,
        tokens_per_language={lang: int(dense.stats.means[lang].counts[0]) for lang in languages},
        runs=[
            {
                "key": run_key(run),
                "label": labels[run_key(run)],
                "path": str(run.path),
                "setting": run.setting,
                "method": run.summary.method,
                "structured": run.capabilities.structured,
                "calibration_language": run.calibration,
                "recipe": run.recipe,
                "target_language": run.target_language,
                "source": run.source,
                "calibration_seed": list(run.calibration_seed),
                "analysed": run in usable,
            }
            for run in runs
        ],
        snr_db={},
        snr_peak_token_share={},
        lsar={
            "rank": dense.subspaces[0].basis.shape[1],
            "singular_values": [s.singular_values.tolist() for s in dense.subspaces],
            "runs": {},
        },
        lape=lape_neuron_summary(
            dense.neurons,
            len(dense.subspaces),
            dense.edges,
            tokens_per_language={lang: int(dense.stats.counts[lang].tokens[0]) for lang in languages},
        ),
        findings={},
    )


def result_for_run(
    result: AnalysisResult, run: Run, dense: DenseAnalysis, pruned: nn.Module, options: AnalyzeOptions
) -> None:
    """One run's SNR, LSAR and LAPE numbers, added to `result`."""
    stats = run_pass(dense.model, pruned, dense.windows, dense.subspaces, options)
    languages, key = result.languages, run_key(run)
    result.snr_db[key] = {lang: stats.snr[lang].db() for lang in languages}
    result.snr_peak_token_share[key] = {lang: stats.snr[lang].peak_token_share() for lang in languages}
    result.lsar["runs"][key] = {
        "pooled": lsar_summary(pooled_errors(stats.errors)),
        "languages": {lang: lsar_summary(stats.errors[lang]) for lang in languages},
    }
    pruned_probs = stack_probabilities(stats.counts, languages)
    result.lape["runs"][key] = {
        **shift_summary(dense.probs, pruned_probs, dense.neurons, dense.edges),
        "overlap": neuron_overlap(run, dense.model, dense.neurons),
    }
