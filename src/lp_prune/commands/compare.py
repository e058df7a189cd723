"""`lp-prune compare RUNS...`: the study's cross-run tables and figures from saved runs.

    lp-prune compare runs/sweeps/languages-default          # run directories or sweep folders
    lp-prune compare wandb:ENTITY/PROJECT/SWEEP_ID           # a W&B sweep's runs, downloaded first
    lp-prune compare wandb:ENTITY/PROJECT/group=NAME         # a W&B group's runs

W&B runs are downloaded into --download_dir/ENTITY/PROJECT/sweep-ID (or group-NAME) as run
directories (tracking.wandb_runs). The report goes to a folder of its own, never inside a run
directory: --out, else ./compare/<name>, the name made of the compared folders' names
(`languages-default`, `sweep-ID`, `en+sw`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jsonargparse import ArgumentParser

from lp_prune.cli_support import add_options
from lp_prune.commands import COMMANDS
from lp_prune.errors import UserError

if TYPE_CHECKING:
    from lp_prune.analysis.compare.verdicts import Margins

HELP = COMMANDS["compare"]


@dataclass
class CompareOptions:
    """Options of `lp-prune compare`."""

    runs: list[str]
    """Run directories, sweep folders, wandb:ENTITY/PROJECT/SWEEP_ID or wandb:ENTITY/PROJECT/group=NAME."""
    out: str | None = None
    """Report folder, not inside a run directory (default: ./compare/<names of the compared folders>)."""
    analysis: str | None = None
    """analysis.json of `lp-prune analyze` for claims C2, C5, C6 (default: <first>/analysis/analysis.json)."""
    download_dir: str = "runs/wandb"
    """Where the runs of wandb: sources are written."""
    wandb_project: str | None = None
    """Project of the analysis run (default: the runs')."""
    wandb_group: str | None = None
    """Group of the analysis run (default: the runs')."""
    no_wandb: bool = False
    """Do not log an analysis run to W&B."""
    c3_margin: float = 0.02
    """C3: a downstream gain smaller than this (accuracy) is no improvement (the equivalence margin)."""
    c5_margin: float = 0.005
    """C5: agnostic relative errors closer than this are similar (the equivalence margin)."""
    c7_margin: float = 0.02
    """C7: a perplexity advantage smaller than this fraction (0.02 = 2%) is no advantage."""

    def margins(self) -> Margins:
        from lp_prune.analysis.compare.verdicts import Margins

        for key in ("c3_margin", "c5_margin", "c7_margin"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise UserError(f"--{key} must be a positive number, got {value}")
        if self.c7_margin >= 1:
            raise UserError(f"--c7_margin is a fraction of the perplexity below 1, got {self.c7_margin}")
        return Margins(c3=self.c3_margin, c5=self.c5_margin, c7=self.c7_margin)


OPTIONS = CompareOptions
DEFAULT_ROOT = Path("compare")  # under the current folder
JOB_TYPE = "compare"
MAX_NAME = 60


def add_arguments(parser: ArgumentParser) -> None:
    add_options(parser, CompareOptions, positional=("runs",), switches=("--no_wandb",))


def execute(options: CompareOptions) -> int:
    from lp_prune.analysis.compare.findings import comparison_findings
    from lp_prune.analysis.compare.plots import comparison_figures
    from lp_prune.analysis.compare.recipes import comparison_recipes
    from lp_prune.analysis.compare.report import iou_rows, perplexity_rows, write_reports
    from lp_prune.analysis.compare.tables import compare
    from lp_prune.analysis.runs import load_analysis, load_runs, wandb_destination, warn_code_requests
    from lp_prune.reporting import format_report_paths
    from lp_prune.tracking.wandb_runs import is_wandb_source, parse_source, resolve_sources

    margins = options.margins()
    sources = [parse_source(p) for p in options.runs if is_wandb_source(p)]  # bad forms fail before any download
    if options.out:
        check_outside_runs(Path(options.out), "--out")
    paths = resolve_sources(list(options.runs), Path(options.download_dir))
    runs = load_runs(paths)
    warn_code_requests(runs)  # compare loads no model and runs no task: nothing of the kind is done
    analysis = load_analysis(options.analysis, paths)  # a damaged analysis.json fails before anything is written
    name = comparison_name(paths)
    if options.out:
        out = writable_folder(Path(options.out))
    else:
        out = writable_folder(check_outside_runs(DEFAULT_ROOT / name, "the default report folder"))
    result = compare(runs)
    figures = comparison_figures(result, out)
    findings = comparison_findings(result, analysis, margins)
    reports = write_reports(result, figures, out, findings, comparison_recipes(result))
    for setting, found in findings.items():
        print(f"{setting}:\n" + "\n".join(f"  {f.claim} {f.verdict}: {f.evidence}" for f in found))
    location = None
    if not options.no_wandb:
        from lp_prune.tracking.wandb_analysis import (
            VERDICTS_KEY,
            log_analysis_run,
            masks_artifacts,
            panel_keys,
            verdicts_table,
        )

        tables = {VERDICTS_KEY: verdicts_table(findings)}
        for setting, matrix in result.perplexity.items():
            tables[f"perplexity/{setting}"] = perplexity_rows(matrix)
            if result.accuracy.get(setting):
                tables[f"accuracy/{setting}"] = perplexity_rows(result.accuracy[setting], higher_is_better=True)
            if result.iou[setting]["pairs"]:
                tables[f"iou/{setting}"] = iou_rows(result.iou[setting])
        project, group = wandb_destination(runs, options.wandb_project, options.wandb_group)
        entity = sources[0].entity if sources else None
        location = log_analysis_run(
            project,
            group,
            f"compare-{name}",
            panel_keys(tables),
            panel_keys(figures),
            out,
            job_type=JOB_TYPE,
            entity=entity,
            config=asdict(options),
            inputs=masks_artifacts(run.path for run in runs),
            report=reports["html"],
        )
    written = {**reports, "figures": f"{out}/*.png ({len(figures)})"} if figures else dict(reports)
    print(format_report_paths(f"Comparison of {len(runs)} runs", written, location))
    return 0


def comparison_name(paths: list[str]) -> str:
    """The report's name: the compared folder's name, or the names joined with '+' (shortened, with a
    hash of the full paths, when they are long or two folders share a name)."""
    from lp_prune.tracking.wandb_runs import safe_name

    folders = [Path(path).resolve() for path in paths]
    names = [safe_name(folder.name) for folder in folders]
    joined = "+".join(names)
    if len(joined) <= MAX_NAME and len(set(names)) == len(names):
        return joined
    digest = hashlib.sha1("\0".join(map(str, folders)).encode("utf-8")).hexdigest()[:8]
    return f"{names[0][: MAX_NAME - 20]}+{len(names) - 1}-more-{digest}"


def enclosing_run_directory(folder: Path) -> Path | None:
    """The run directory `folder` lies in (or is), or None: a folder holding lp_prune's marker."""
    from lp_prune.tracking.run_dir import RunDirectory

    resolved = folder.resolve()
    return next((path for path in (resolved, *resolved.parents) if RunDirectory(path).is_marked()), None)


def check_outside_runs(folder: Path, what: str) -> Path:
    """`folder`, unless it lies inside a run directory: a report there would mix with the run's files."""
    run = enclosing_run_directory(folder)
    if run is not None:
        raise UserError(
            f"{what} {folder} lies inside the run directory {run}; a report goes in a folder of its own: "
            "choose another --out"
        )
    return folder


def writable_folder(folder: Path) -> Path:
    """The report folder, made and tried now: the figures and tables take a while to compute first."""
    from lp_prune.tracking.run_dir import unwritable_reason

    reason = unwritable_reason(folder)
    if reason:
        raise UserError(f"cannot write the report into {folder} ({reason}); choose another --out")
    return folder
