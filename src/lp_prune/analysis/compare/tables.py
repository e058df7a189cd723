"""Cross-run tables of the study: perplexity and downstream-accuracy matrices (with per-item scores
and stderrs), mask IoU and disagreement between calibration languages, and per-layer pruning error /
SNR across calibration languages.

Input: complete run directories (or sweep folders holding them). Runs are grouped by "setting"
(method, pattern, sparsity, nsamples, seqlen); inside a setting each calibration recipe is a row
(see lp_prune.analysis.runs). Runs of one recipe with different seeds are repeats: their numbers are
averaged, and their masks give the same-language floor of the mask IoU (how much two calibration
sets of one language agree).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lp_prune.analysis.compare.groups import by_setting, one_run_per_language, recipe_order
from lp_prune.analysis.compare.mask_iou import disagreement_by_projection, iou_tables
from lp_prune.analysis.runs import Run
from lp_prune.config.tasks import STUDY_TASKS
from lp_prune.models.layers import projection


@dataclass
class Comparison:
    model: str
    runs: list[Run]
    perplexity: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # setting -> row -> lang
    accuracy: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # setting -> row -> task
    accuracy_stderr: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # as accuracy
    items: dict[str, dict[str, dict[str, dict[Any, float]]]] = field(default_factory=dict)  # setting -> row -> task
    metrics: dict[str, dict[str, str]] = field(default_factory=dict)  # setting -> task -> the score read
    iou: dict[str, dict[str, Any]] = field(default_factory=dict)  # setting -> tables
    disagreement: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # setting -> proj
    layer_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # setting -> metric -> proj -> lang


def compare(runs: list[Run]) -> Comparison:
    result = Comparison(model=runs[0].summary.model, runs=runs)
    for setting, group in by_setting(runs).items():
        result.perplexity[setting] = perplexity_matrix(group)
        result.accuracy[setting] = accuracy_matrix(group)
        result.metrics[setting] = task_metrics(group)
        result.items[setting] = item_scores(group)
        result.accuracy_stderr[setting] = accuracy_stderr(group, result.items[setting])
        result.iou[setting] = iou_tables(group)
        result.disagreement[setting] = disagreement_by_projection(group)
        result.layer_metrics[setting] = layer_metrics(group)
    return result


def perplexity_matrix(runs: list[Run]) -> dict[str, dict[str, float]]:
    """{calibration language or 'dense': {evaluation language: perplexity}} (means over repeats). A
    diverged run (NaN, inf or null) counts as the worst value, inf, so its row reads inf, not a mean
    of the others."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for stage, row in (("pruned", run.recipe), ("dense", "dense")):
            for lang, value in run.summary.perplexity.get(stage, {}).items():
                rows[row][lang].append(_perplexity(value))
    order = ["dense", *recipe_order(runs)]
    return {row: {lang: statistics.fmean(v) for lang, v in rows[row].items()} for row in order if row in rows}


def read_metric(task: str, result: dict[str, Any] | None = None) -> str:
    """The score compare reads for a task: acc_norm for ARC and HellaSwag (their convention: length-
    normalised log-likelihood), MKQA's token F1 (exact match is kept beside it), acc for the others
    (Belebele, MMLU, the proxy and the probe). A result without that score falls back to acc."""
    if task in _ACC_NORM_TASKS:
        metric = "acc_norm"
    elif task in _F1_TASKS:
        metric = "f1"
    else:
        metric = "acc"
    return metric if result is None or result.get(metric) is not None else "acc"


_ACC_NORM_TASKS = {name for key in ("arc", "hellaswag") for name in STUDY_TASKS[key].values() if name}
_F1_TASKS = {name for name in STUDY_TASKS["mkqa"].values() if name}


def task_metrics(runs: list[Run]) -> dict[str, str]:
    """{task: the score read for it} over the runs' downstream results."""
    out: dict[str, str] = {}
    for run in runs:
        for results in (run.summary.downstream or {}).values():
            for task, result in results.items():
                out.setdefault(task, read_metric(task, result))
    return dict(sorted(out.items()))


def accuracy_matrix(runs: list[Run]) -> dict[str, dict[str, float]]:
    """{calibration recipe or 'dense': {downstream task: score}} from summary.downstream (lm-eval), the
    score of each task as read_metric says (means over repeats)."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for stage, row in (("pruned", run.recipe), ("dense", "dense")):
            for task, metrics in (run.summary.downstream or {}).get(stage, {}).items():
                metric = read_metric(task, metrics)
                if metrics.get(metric) is not None:
                    rows[row][task].append(metrics[metric])
    order = ["dense", *recipe_order(runs)]
    return {row: {task: statistics.fmean(v) for task, v in rows[row].items()} for row in order if row in rows}


def item_scores(runs: list[Run]) -> dict[str, dict[str, dict[Any, float]]]:
    """{recipe or 'dense': {task: {item id: score}}} from the runs' per-item results (mean over repeats)."""
    rows: dict[str, dict[str, dict[Any, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in runs:
        for stage, row in (("pruned", run.recipe), ("dense", "dense")):
            for task, result in (run.summary.downstream or {}).get(stage, {}).items():
                items = result.get("items") or {}
                scores = items.get(read_metric(task, result)) or []
                for item, score in zip(items.get("ids", []), scores, strict=False):
                    rows[row][task][item].append(score)
    return {
        row: {task: {item: statistics.fmean(v) for item, v in scores.items()} for task, scores in tasks.items()}
        for row, tasks in rows.items()
    }


def accuracy_stderr(runs: list[Run], items: dict[str, dict[str, dict[Any, float]]]) -> dict[str, dict[str, float]]:
    """{row: {task: stderr of its score}}: over the per-item scores (sd / sqrt(n)) when the runs kept
    them, else lm-eval's own stderr (the first run's)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for run in runs:
        for stage, row in (("pruned", run.recipe), ("dense", "dense")):
            for task, result in (run.summary.downstream or {}).get(stage, {}).items():
                scores = list(items.get(row, {}).get(task, {}).values())
                if len(scores) >= 2:
                    out[row][task] = statistics.stdev(scores) / math.sqrt(len(scores))
                elif result.get(f"{read_metric(task, result)}_stderr") is not None:
                    out[row].setdefault(task, result[f"{read_metric(task, result)}_stderr"])
    return dict(out)


def best_per_column(matrix: dict[str, dict[str, float]], higher_is_better: bool = False) -> dict[str, str]:
    """For each column, the calibration language with the best pruned value (lowest perplexity, or
    highest accuracy with higher_is_better)."""
    pruned = {row: values for row, values in matrix.items() if row != "dense"}
    columns = {col for values in pruned.values() for col in values}
    sign = -1.0 if higher_is_better else 1.0
    return {col: min(pruned, key=lambda row: sign * pruned[row].get(col, sign * math.inf)) for col in sorted(columns)}


def layer_metrics(runs: list[Run]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """{metric: {projection: {calibration recipe: [value per layer]}}} for snr_db and rel_error (first run each)."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {"snr_db": {}, "rel_error": {}}
    for run in one_run_per_language(runs).values():
        for metric in out:
            per_proj: dict[str, dict[int, float]] = defaultdict(dict)
            for record in run.summary.modules:
                per_proj[projection(record["module"])][record["layer"]] = _number(record[metric])
            for proj, layers in per_proj.items():
                out[metric].setdefault(proj, {})[run.recipe] = [layers[i] for i in sorted(layers)]
    return out


def _perplexity(value: Any) -> float:
    """A perplexity as a float: anything but a finite positive number is a diverged run (inf)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else math.inf


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)
