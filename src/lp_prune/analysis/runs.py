"""Saved runs as the analyses read them: `Run` (a run directory's config and summary), finding and
loading run directories (directly or one level below a sweep folder), the W&B destination of an
analysis run about them, and `lp-prune analyze`'s analysis.json beside them.

A run's recipe is its row in the cross-run tables: the calibration language (or mix), with the text
source when it is not the packaged text ("sw generated") and the statistics rule when it is not
pooled ("all balanced"); "none" for a method that reads no calibration data (RTN, magnitude), whatever
language its config names. Runs of one recipe with different seeds are repeats.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lp_prune.analysis.result import AnalysisResult
from lp_prune.analysis.settings import SettingKey, setting_key, setting_labels
from lp_prune.config import RunConfig, WandbConfig
from lp_prune.config.code_options import warn_not_asked
from lp_prune.errors import UserError
from lp_prune.languages import LANGUAGES
from lp_prune.pruning.method import Capabilities
from lp_prune.storage.files import read_json
from lp_prune.tracking import RunDirectory
from lp_prune.tracking.run_labels import labelled
from lp_prune.tracking.saved_masks import mask_shapes
from lp_prune.tracking.summary import RunSummary, read_summary

log = logging.getLogger(__name__)

NO_CALIBRATION = "none"  # the row of runs whose method reads no calibration data


@dataclass
class Run:
    path: Path
    config: RunConfig
    summary: RunSummary
    setting_label: str | None = None  # set by label_settings: the base label told apart from its neighbours

    @property
    def language(self) -> str:
        return self.summary.calibration_language

    @property
    def capabilities(self) -> Capabilities:
        """What the run's method declared, as its summary records it (tracking.summary)."""
        return self.summary.capabilities()

    @property
    def method_settings(self) -> dict[str, Any]:
        """The method's settings as the summary records them, else as config.yaml gives them."""
        recorded = self.summary.method_settings()
        return self.config.prune.method.settings() if recorded is None else recorded

    @property
    def calibrated(self) -> bool:
        """Whether the run's method read its calibration data (RTN and magnitude do not)."""
        return self.capabilities.calibrates

    @property
    def calibration(self) -> str:
        """The calibration language (or mix), or 'none' when the method read no calibration data."""
        return self.language if self.calibrated else NO_CALIBRATION

    @property
    def recipe(self) -> str:
        """The row of the run: 'sw', 'en+sw', 'sw generated', 'all balanced', 'none', ..."""
        if not self.calibrated:
            return NO_CALIBRATION
        parts = [self.language]
        source, statistics_rule = self.config.data.source, self.config.prune.statistics
        parts += [source] if source != "packaged" else []
        parts += [statistics_rule] if statistics_rule != "pooled" else []
        return " ".join(parts)

    @property
    def target_language(self) -> str | None:
        """The one language the run calibrates on, whatever the text source (packaged, mC4, files,
        tokens); None for recipes that are no calibration *language*: mixes, 'all', the model's own
        generated text, statistics rules other than pooled, and methods that read no calibration data."""
        pooled = self.config.prune.statistics == "pooled"
        if self.calibrated and self.language in LANGUAGES and pooled and self.config.data.source != "generated":
            return self.language
        return None

    @property
    def source(self) -> str:
        return self.config.data.source

    @property
    def calibration_seed(self) -> tuple[Any, Any]:
        """(data.seed, seed): runs of one recipe that differ here drew different calibration sets."""
        return self.config.data.seed, self.config.seed

    @property
    def setting_key(self) -> SettingKey:
        """The run's whole result-relevant config (lp_prune.analysis.settings): equal keys, same setting."""
        return setting_key(self.config, self.calibrated)

    @property
    def setting(self) -> str:
        """The setting's label in this comparison (label_settings), else its base label."""
        return self.setting_label or self.base_setting

    @property
    def base_setting(self) -> str:
        """What a setting is called: method, pattern and sparsity (for methods that zero
        weights), calibration size (for methods that read calibration data), and for quantization the
        grid: 'sparsegpt unstructured s=0.5 n=32x256', 'gptq n=32x256 4-bit g128' (other bits are another
        setting), 'rtn 4-bit g128'. Structured methods say 'structured' (whole FFN channels and heads).
        Settings that share it are told apart by label_settings."""
        s, method = self.summary, self.capabilities
        label = s.method
        if method.zeroes:
            label += f" {'structured' if method.structured else s.pattern} s={s.target_sparsity:g}"
        if method.calibrates:
            label += f" n={s.nsamples}x{s.seqlen}"
        return f"{label} {grid_label(self.method_settings)}" if method.quantizes else label


def grid_label(settings: dict[str, Any]) -> str:
    """'4-bit g128' (per-row grids: 'g-row'), with ' sym' and ' act-order' when set, from a quantizing
    method's settings."""
    group = settings.get("group_size")
    parts = [f"{settings.get('bits')}-bit g{'-row' if group in (None, -1) else group}"]
    parts += ["sym"] if settings.get("symmetric") else []
    parts += ["act-order"] if settings.get("act_order") else []
    return " ".join(parts)


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
    summary = read_summary(run.summary)
    check_masks_fit(path, summary)
    return Run(path, run.read_config(), summary)


def check_masks_fit(path: Path, summary: RunSummary) -> None:
    """Refuse a run whose masks file does not belong to the model its summary records: a mask must hold
    as many weights as the summary's module of its name, and no mask may name a module the summary lacks."""
    sizes = {r["module"]: r["numel"] for r in summary.modules if isinstance(r.get("numel"), int)}
    if not sizes:
        return  # a summary without module sizes (hand-made or old) has nothing to check against
    shapes = mask_shapes(path)
    foreign = sorted(set(shapes) - set(sizes))
    wrong = [name for name in sizes if name in shapes and math.prod(shapes[name]) != sizes[name]]
    if foreign or wrong:
        name = (wrong or foreign)[0]
        what = (
            f"its mask {name} holds {math.prod(shapes[name])} weights, the summary's module {sizes[name]}"
            if wrong
            else f"a mask names {name}, which the summary does not prune"
        )
        raise UserError(f"{path}: masks.safetensors does not belong to the model its summary.json records ({what})")


def label_settings(runs: list[Run]) -> None:
    """Give every run its setting's label: the base label, plus the keys that tell apart settings
    sharing it ('owl=true' / 'owl=false')."""
    base = {run.setting_key: run.base_setting for run in runs}
    labels = setting_labels(base)
    for run in runs:
        run.setting_label = labels[run.setting_key]


def distinct_draws(runs: list[Run]) -> list[Run]:
    """The runs less those that repeat another's calibration draw: the same setting and recipe with the
    same seeds, or byte-identical masks. They are one run, not two repeats (a warning names them)."""
    sizes = Counter((run.setting_key, run.recipe) for run in runs)
    kept: list[Run] = []
    seen: dict[tuple[Any, ...], Run] = {}
    for run in runs:
        group = (run.setting_key, run.recipe)
        draw = (*group, "seeds", run.calibration_seed)
        digest = _digest(run.path / "masks.safetensors") if sizes[group] > 1 and run.calibrated else None
        twin = (*group, "masks", digest)
        first = seen.get(draw) or (seen.get(twin) if digest else None)
        if first is not None:
            how = "seeds" if first.calibration_seed == run.calibration_seed else "masks"
            log.warning(
                "%s repeats the calibration draw of %s (same setting, recipe and %s): counted once",
                run.path.name,
                first.path.name,
                how,
            )
            continue
        seen[draw] = run
        if digest:
            seen[twin] = run
        kept.append(run)
    return kept


def _digest(path: Path) -> str | None:
    """The masks file's SHA-256 (None when there is none): identical masks are one calibration draw."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def warn_code_requests(
    runs: list[Run], flags: dict[str, str] | None = None, given: dict[str, bool] | None = None
) -> None:
    """A warning line for each option that runs code which a run's config.yaml asks for and this command
    line does not (config.code_options): `flags` are the command's own flags for them, `given` what
    the command line asked for."""
    for run in runs:
        folder = RunDirectory(run.path)
        asked = {key: value for key, value in folder.code_requests().items() if not (given or {}).get(key)}
        warn_not_asked(str(folder.config), asked, flags)


def load_runs(paths: list[str | Path]) -> list[Run]:
    runs = [load_run(p) for p in find_runs(paths)]
    if len(runs) < 1:
        raise UserError("no complete runs to compare")
    models = defaultdict(list)
    for run in runs:
        models[run.summary.model].append(run.path.name)
    if len(models) > 1:
        listing = "; ".join(f"{m} ({len(r)} runs)" for m, r in models.items())
        raise UserError(f"runs of different models cannot be compared in one table: {listing}")
    runs = distinct_draws(runs)
    label_settings(runs)
    return runs


def wandb_destination(runs: list[Run], project: str | None = None, group: str | None = None) -> tuple[str, str | None]:
    """The W&B project and group of an analysis run about `runs`: the ones the runs logged to (their
    config.yaml's wandb section), unless given. Runs of several projects: the first run's project;
    runs of several groups: no group. Either way a warning says so."""
    sections = [labelled(run.config) for run in runs]  # the group a run logged to: given, else its setting
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


def load_analysis(path: str | Path | None, run_paths: list[str | Path]) -> AnalysisResult | None:
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
            return AnalysisResult.from_json(read_json(candidate), candidate)  # damaged: an error naming it
    return None
