"""Cross-run tables of the study: perplexity matrix, mask IoU between calibration languages, and
per-layer pruning error / SNR across calibration languages.

Input: complete run directories (or sweep folders holding them). Runs are grouped by "setting"
(method, pattern, sparsity, nsamples, seqlen); inside a setting each calibration recipe is a row:
the calibration language (or mix), with the text source when it is not the packaged text
("sw generated") and the statistics rule when it is not pooled ("all balanced"). Runs of one
recipe with different seeds are repeats: their numbers are averaged, and their masks give the
same-language floor of the mask IoU (how much two calibration sets of one language agree).
"""

from __future__ import annotations

import itertools
import json
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
    def recipe(self) -> str:
        """The row of the run: 'sw', 'en+sw', 'sw generated', 'all balanced', ..."""
        parts = [self.language]
        source, statistics_rule = self.config.data.source, self.config.prune.statistics
        parts += [source] if source != "packaged" else []
        parts += [statistics_rule] if statistics_rule != "pooled" else []
        return " ".join(parts)

    @property
    def calibration_seed(self) -> tuple[Any, Any]:
        """(data.seed, seed): runs of one recipe that differ here drew different calibration sets."""
        return self.config.data.seed, self.config.seed

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
    accuracy_stderr: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # as accuracy
    items: dict[str, dict[str, dict[str, dict[Any, float]]]] = field(default_factory=dict)  # setting -> row -> task
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
    return Run(path, run.read_config(), read_summary(run.summary))


# What the tables read from every run's summary.json (build_summary writes them all).
SUMMARY_KEYS = (
    "model",
    "method",
    "pattern",
    "target_sparsity",
    "calibration_language",
    "nsamples",
    "seqlen",
    "modules",
)


def read_summary(path: Path) -> dict[str, Any]:
    """A run's summary.json, or a UserError naming the file when it is not one lp_prune wrote."""
    summary = read_json(path)
    if not isinstance(summary, dict):
        shown = json.dumps(summary)[:40]
        raise UserError(f"{path} holds {shown}, not a run summary (a JSON object); the run is damaged")
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise UserError(f"{path} is not a complete run summary (no {', '.join(missing)}); the run is damaged")
    if not isinstance(summary["modules"], list):
        raise UserError(f"{path}: 'modules' is not a list of pruned modules; the run is damaged")
    return summary


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


def load_analysis(path: str | Path | None, run_paths: list[str | Path]) -> dict[str, Any] | None:
    """`lp-prune analyze`'s analysis.json: `path` when given (a file or its folder), else the first runs
    folder's analysis/analysis.json or analysis.json when there is one; None when there is none."""
    if path is not None:
        candidates = [Path(path) / "analysis.json" if Path(path).is_dir() else Path(path)]
        if not candidates[0].is_file():
            raise UserError(f"--analysis {path}: no analysis.json there (write one with `lp-prune analyze`)")
    else:
        first = Path(run_paths[0])
        candidates = [first / "analysis" / "analysis.json", first / "analysis.json"]
    for candidate in candidates:
        if candidate.is_file():
            return read_json(candidate)  # a damaged file is a DataError naming it
    return None


def compare(runs: list[Run]) -> Comparison:
    result = Comparison(model=runs[0].summary["model"], runs=runs)
    for setting, group in _by_setting(runs).items():
        result.perplexity[setting] = perplexity_matrix(group)
        result.accuracy[setting] = accuracy_matrix(group)
        result.items[setting] = item_scores(group)
        result.accuracy_stderr[setting] = accuracy_stderr(group, result.items[setting])
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
    """The runs' recipes: single languages in LANGUAGES order, then the others as they come."""
    present = list(dict.fromkeys(run.recipe for run in runs))
    return [lang for lang in LANGUAGES if lang in present] + [r for r in present if r not in LANGUAGES]


def one_run_per_language(runs: list[Run]) -> dict[str, Run]:
    """The first run of each recipe (single languages first, in LANGUAGES order; masks are not averaged)."""
    first: dict[str, Run] = {}
    for run in runs:
        first.setdefault(run.recipe, run)
    return {recipe: first[recipe] for recipe in _languages(runs)}


def cross_language_runs(runs: list[Run]) -> dict[str, Run]:
    """The runs whose masks are compared across calibration: one per single-language recipe when
    there are two or more of those (other recipes are no calibration *language*), else one per recipe."""
    first = one_run_per_language(runs)
    single = {recipe: run for recipe, run in first.items() if recipe in LANGUAGES}
    return single if len(single) >= 2 else first


def seed_pairs(runs: list[Run]) -> dict[str, tuple[Run, Run]]:
    """Per recipe, two runs with different calibration seeds (the first two): the same-language floor."""
    pairs: dict[str, tuple[Run, Run]] = {}
    for recipe in _languages(runs):
        repeats = [run for run in runs if run.recipe == recipe]
        for a, b in itertools.combinations(repeats, 2):
            if a.calibration_seed != b.calibration_seed:
                pairs[recipe] = (a, b)
                break
    return pairs


def perplexity_matrix(runs: list[Run]) -> dict[str, dict[str, float]]:
    """{calibration language or 'dense': {evaluation language: perplexity}} (means over repeats)."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for stage, row in (("pruned", run.recipe), ("dense", "dense")):
            for lang, value in run.summary.get("perplexity", {}).get(stage, {}).items():
                rows[row][lang].append(value)
    order = ["dense", *_languages(runs)]
    return {row: {lang: statistics.fmean(v) for lang, v in rows[row].items()} for row in order if row in rows}


def accuracy_matrix(runs: list[Run]) -> dict[str, dict[str, float]]:
    """{calibration language or 'dense': {downstream task: acc}} from summary["downstream"] (lm-eval)."""
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        for stage, row in (("pruned", run.recipe), ("dense", "dense")):
            for task, metrics in run.summary.get("downstream", {}).get(stage, {}).items():
                if metrics.get("acc") is not None:
                    rows[row][task].append(metrics["acc"])
    order = ["dense", *_languages(runs)]
    return {row: {task: statistics.fmean(v) for task, v in rows[row].items()} for row in order if row in rows}


def item_scores(runs: list[Run], metric: str = "acc") -> dict[str, dict[str, dict[Any, float]]]:
    """{recipe or 'dense': {task: {item id: score}}} from the runs' per-item results (mean over repeats)."""
    rows: dict[str, dict[str, dict[Any, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run in runs:
        for stage, row in (("pruned", run.recipe), ("dense", "dense")):
            for task, result in run.summary.get("downstream", {}).get(stage, {}).items():
                items = result.get("items") or {}
                for item, score in zip(items.get("ids", []), items.get(metric, []), strict=False):
                    rows[row][task][item].append(score)
    return {
        row: {task: {item: statistics.fmean(v) for item, v in scores.items()} for task, scores in tasks.items()}
        for row, tasks in rows.items()
    }


def accuracy_stderr(runs: list[Run], items: dict[str, dict[str, dict[Any, float]]]) -> dict[str, dict[str, float]]:
    """{row: {task: stderr of acc}}: over the per-item scores (sd / sqrt(n)) when the runs kept them,
    else lm-eval's own stderr (the first run's)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for run in runs:
        for stage, row in (("pruned", run.recipe), ("dense", "dense")):
            for task, result in run.summary.get("downstream", {}).get(stage, {}).items():
                scores = list(items.get(row, {}).get(task, {}).values())
                if len(scores) >= 2:
                    out[row][task] = statistics.stdev(scores) / math.sqrt(len(scores))
                elif result.get("acc_stderr") is not None:
                    out[row].setdefault(task, result["acc_stderr"])
    return dict(out)


def best_per_column(matrix: dict[str, dict[str, float]], higher_is_better: bool = False) -> dict[str, str]:
    """For each column, the calibration language with the best pruned value (lowest perplexity, or
    highest accuracy with higher_is_better)."""
    pruned = {row: values for row, values in matrix.items() if row != "dense"}
    columns = {col for values in pruned.values() for col in values}
    sign = -1.0 if higher_is_better else 1.0
    return {col: min(pruned, key=lambda row: sign * pruned[row].get(col, sign * math.inf)) for col in sorted(columns)}


def iou_tables(runs: list[Run]) -> dict[str, Any]:
    """Mask IoU for every pair of calibration languages, per module; aggregated per projection.

    "floor": the same per recipe for two of its runs with different calibration seeds (the IoU two
    calibration sets of one language reach); "floor_projection_layer" its mean over those recipes.
    """
    by_language = cross_language_runs(runs)
    languages = list(by_language)
    per_module: dict[tuple[str, str], dict[str, float]] = {}
    density: dict[str, float] = {}
    for a, b in itertools.combinations(languages, 2):
        per_module[(a, b)] = _pair_iou(by_language[a].path, by_language[b].path, density, a)
    floor = {recipe: _pair_iou(a.path, b.path, {}, recipe) for recipe, (a, b) in seed_pairs(runs).items()}
    return {
        "floor": {recipe: _mean_by(values, projection) for recipe, values in floor.items()},
        "floor_projection_layer": _projection_layer_means({(r, r): v for r, v in floor.items()}),
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
    by_language = {lang: run.path for lang, run in cross_language_runs(runs).items()}
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
    """{metric: {projection: {calibration recipe: [value per layer]}}} for snr_db and rel_error (first run each)."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {"snr_db": {}, "rel_error": {}}
    for run in one_run_per_language(runs).values():
        for metric in out:
            per_proj: dict[str, dict[int, float]] = defaultdict(dict)
            for record in run.summary["modules"]:
                per_proj[projection(record["module"])][record["layer"]] = _number(record[metric])
            for proj, layers in per_proj.items():
                out[metric].setdefault(proj, {})[run.recipe] = [layers[i] for i in sorted(layers)]
    return out


def _projection_order(name: str) -> int:
    return PROJECTIONS.index(name) if name in PROJECTIONS else len(PROJECTIONS)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)
