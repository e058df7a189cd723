"""Cross-run tables of the study: perplexity matrix, mask IoU between calibration languages, and
per-layer pruning error / SNR across calibration languages.

Input: complete run directories (or sweep folders holding them). Runs are grouped by "setting"
(method, pattern, sparsity, nsamples, seqlen); inside a setting each calibration language is a row.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lp_prune.analysis.iou import chance_iou, packed_iou, popcount
from lp_prune.analysis.mask_structure import setting_disagreement
from lp_prune.config import LANGUAGES, RunConfig, WandbConfig
from lp_prune.errors import UserError
from lp_prune.models.layers import layer_index, projection
from lp_prune.tracking import RunDirectory, mask_names, packed_masks, read_json

log = logging.getLogger(__name__)

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class Run:
    path: Path
    config: RunConfig
    summary: dict[str, Any]

    @property
    def language(self) -> str:
        return self.summary["calibration_language"]

    @property
    def setting(self) -> str:
        s = self.summary
        return f"{s['method']} {s['pattern']} s={s['target_sparsity']:g} n={s['nsamples']}x{s['seqlen']}"


@dataclass
class Comparison:
    model: str
    runs: list[Run]
    perplexity: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # setting -> row -> lang
    accuracy: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # setting -> row -> task
    iou: dict[str, dict[str, Any]] = field(default_factory=dict)  # setting -> tables
    disagreement: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # setting -> proj
    layer_metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # setting -> metric -> proj -> lang


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories named directly, or found one level below a sweep folder."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise UserError(f"{path}: no such run or sweep directory")
        if (path / "status").exists() or (path / "summary.json").exists():
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir() and (p / "status").exists())
        if not children:
            raise UserError(f"{path} holds no run directories (folders with a 'status' file)")
        incomplete = [p.name for p in children if not RunDirectory(p).is_complete()]
        if incomplete:
            log.warning("skipping %d unfinished runs in %s: %s", len(incomplete), path, ", ".join(incomplete))
        found += [p for p in children if RunDirectory(p).is_complete()]
    return found


def load_run(path: Path) -> Run:
    run = RunDirectory(path)
    if not run.is_complete():
        raise UserError(f"{path} is not a complete run (status: {run.status() or 'missing'}); rerun or resume it")
    if not run.masks.exists():
        raise UserError(f"{path} is marked complete but has no masks.safetensors; the run directory is damaged")
    return Run(path, run.read_config(), read_json(run.summary))


def load_runs(paths: list[str | Path]) -> list[Run]:
    runs = [load_run(p) for p in find_runs(paths)]
    if len(runs) < 1:
        raise UserError("no complete runs to compare")
    models = defaultdict(list)
    for run in runs:
        models[run.summary["model"]].append(run.path.name)
    if len(models) > 1:
        listing = "; ".join(f"{m} ({len(r)} runs)" for m, r in models.items())
        raise UserError(f"runs of different models cannot be compared in one table: {listing}")
    return runs


def wandb_destination(runs: list[Run], project: str | None = None, group: str | None = None) -> tuple[str, str | None]:
    """The W&B project and group of an analysis run about `runs`: the ones the runs logged to (their
    config.yaml's wandb section), unless given. Runs of several projects: the first run's project;
    runs of several groups: no group. Either way a warning says so."""
    sections = [run.config.wandb for run in runs]
    projects = list(dict.fromkeys(section.project or WandbConfig().project for section in sections))
    groups = list(dict.fromkeys(section.group for section in sections))
    if project is None:
        project = projects[0]
        if len(projects) > 1:
            log.warning("the runs are in W&B projects %s; the analysis run goes to %s", ", ".join(projects), project)
    if group is None and len(groups) == 1:
        group = groups[0]
    elif group is None:
        log.warning("the runs are in several W&B groups (%s); the analysis run gets none", ", ".join(map(str, groups)))
    return project, group


def compare(runs: list[Run]) -> Comparison:
    result = Comparison(model=runs[0].summary["model"], runs=runs)
    for setting, group in _by_setting(runs).items():
        result.perplexity[setting] = perplexity_matrix(group)
        result.accuracy[setting] = accuracy_matrix(group)
        result.iou[setting] = iou_tables(group)
        result.disagreement[setting] = disagreement_by_projection(group)
        result.layer_metrics[setting] = layer_metrics(group)
    return result


def _by_setting(runs: list[Run]) -> dict[str, list[Run]]:
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.setting].append(run)
    return dict(groups)


def _languages(runs: list[Run]) -> list[str]:
    present = {run.language for run in runs}
    return [lang for lang in LANGUAGES if lang in present]


def one_run_per_language(runs: list[Run]) -> dict[str, Run]:
    """The first run of each calibration language, in LANGUAGES order (masks are not averaged)."""
    first: dict[str, Run] = {}
    for run in runs:
        first.setdefault(run.language, run)
    return {lang: first[lang] for lang in LANGUAGES if lang in first}


def perplexity_matrix(runs: list[Run]) -> dict[str, dict[str, float]]:
    """{calibration language or 'dense': {evaluation language: perplexity}} (means over repeats)."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for stage, row in (("pruned", run.language), ("dense", "dense")):
            for lang, value in run.summary.get("perplexity", {}).get(stage, {}).items():
                rows[row][lang].append(value)
    order = ["dense", *_languages(runs)]
    return {row: {lang: statistics.fmean(v) for lang, v in rows[row].items()} for row in order if row in rows}


def accuracy_matrix(runs: list[Run]) -> dict[str, dict[str, float]]:
    """{calibration language or 'dense': {downstream task: acc}} from summary["downstream"] (lm-eval)."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for stage, row in (("pruned", run.language), ("dense", "dense")):
            for task, metrics in run.summary.get("downstream", {}).get(stage, {}).items():
                if metrics.get("acc") is not None:
                    rows[row][task].append(metrics["acc"])
    order = ["dense", *_languages(runs)]
    return {row: {task: statistics.fmean(v) for task, v in rows[row].items()} for row in order if row in rows}


def best_per_column(matrix: dict[str, dict[str, float]], higher_is_better: bool = False) -> dict[str, str]:
    """For each column, the calibration language with the best pruned value (lowest perplexity, or
    highest accuracy with higher_is_better)."""
    pruned = {row: values for row, values in matrix.items() if row != "dense"}
    columns = {col for values in pruned.values() for col in values}
    sign = -1.0 if higher_is_better else 1.0
    return {col: min(pruned, key=lambda row: sign * pruned[row].get(col, sign * math.inf)) for col in sorted(columns)}


def iou_tables(runs: list[Run]) -> dict[str, Any]:
    """Mask IoU for every pair of calibration languages, per module; aggregated per projection."""
    by_language = one_run_per_language(runs)
    languages = list(by_language)
    per_module: dict[tuple[str, str], dict[str, float]] = {}
    density: dict[str, float] = {}
    for a, b in itertools.combinations(languages, 2):
        per_module[(a, b)] = _pair_iou(by_language[a].path, by_language[b].path, density, a)
    return {
        "languages": languages,
        "pairs": {f"{a}-{b}": values for (a, b), values in per_module.items()},
        "projection_layer": _projection_layer_means(per_module),
        "pair_projection": {
            f"{a}-{b}": _mean_by(values, lambda name: projection(name)) for (a, b), values in per_module.items()
        },
        "chance": chance_iou(statistics.fmean(density.values()), statistics.fmean(density.values()))
        if density
        else math.nan,
    }


def _pair_iou(path_a: Path, path_b: Path, density: dict[str, float], lang_a: str) -> dict[str, float]:
    """IoU per module of two runs, streaming one packed mask of each at a time."""
    values = {}
    names_b = set(mask_names(path_b))
    for name, packed_a, shape in packed_masks(path_a):
        if name in names_b:
            _, packed_b, _ = next(packed_masks(path_b, [name]))
            values[name] = packed_iou(packed_a, packed_b)
            density[f"{lang_a}:{name}"] = popcount(packed_a) / math.prod(shape)
    return values


def _projection_layer_means(per_module: dict[tuple[str, str], dict[str, float]]) -> dict[str, list[float]]:
    """{projection: [mean IoU over language pairs, per layer]}."""
    cells: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for values in per_module.values():
        for name, value in values.items():
            cells[projection(name)][layer_index(name)].append(value)
    return {
        proj: [statistics.fmean(layers[i]) for i in sorted(layers)]
        for proj, layers in sorted(cells.items(), key=lambda item: _projection_order(item[0]))
    }


def _mean_by(values: dict[str, float], key) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for name, value in values.items():
        groups[key(name)].append(value)
    return {k: statistics.fmean(v) for k, v in sorted(groups.items(), key=lambda item: _projection_order(item[0]))}


def disagreement_by_projection(runs: list[Run]) -> dict[str, dict[str, float]]:
    """Where the calibration languages' masks disagree, per projection (means over layers): the share of
    positions pruned by some languages but not all, and how unevenly rows / columns carry it (CV)."""
    by_language = {lang: run.path for lang, run in one_run_per_language(runs).items()}
    if len(by_language) < 2:
        return {}
    cells: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, disagreement in setting_disagreement(by_language).items():
        cells[projection(name)].append(disagreement.summary())
    return {
        proj: {key: statistics.fmean(c[key] for c in rows) for key in ("rate", "row_cv", "col_cv")}
        for proj, rows in sorted(cells.items(), key=lambda item: _projection_order(item[0]))
    }


def layer_metrics(runs: list[Run]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """{metric: {projection: {calibration language: [value per layer]}}} for snr_db and rel_error."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {"snr_db": {}, "rel_error": {}}
    for run in runs:
        for metric in out:
            per_proj: dict[str, dict[int, float]] = defaultdict(dict)
            for record in run.summary["modules"]:
                per_proj[projection(record["module"])][record["layer"]] = _number(record[metric])
            for proj, layers in per_proj.items():
                out[metric].setdefault(proj, {})[run.language] = [layers[i] for i in sorted(layers)]
    return out


def _projection_order(name: str) -> int:
    return PROJECTIONS.index(name) if name in PROJECTIONS else len(PROJECTIONS)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)
