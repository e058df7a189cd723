"""`lp-prune compare RUNS...`: the study's cross-run tables and figures from saved runs.

    lp-prune compare runs/sweeps/languages-default          # run directories or sweep folders
    lp-prune compare wandb:ENTITY/PROJECT/SWEEP_ID           # a W&B sweep's runs, downloaded first
    lp-prune compare wandb:ENTITY/PROJECT/group=NAME         # a W&B group's runs

W&B runs are downloaded into --download_dir/ENTITY/PROJECT/sweep-ID (or group-NAME) as run
directories (tracking.wandb_runs); the report goes to <that folder>/compare unless --out says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jsonargparse import ArgumentParser

from lp_prune.cli_support import add_options
from lp_prune.errors import UserError

HELP = "Compare runs (run or sweep directories, W&B sweeps or groups): perplexity, mask IoU, SNR; report + W&B."


@dataclass
class CompareOptions:
    """Options of `lp-prune compare`."""

    runs: list[str]
    """Run directories, sweep folders, wandb:ENTITY/PROJECT/SWEEP_ID or wandb:ENTITY/PROJECT/group=NAME."""
    out: str | None = None
    """Report folder (default: <first>/compare)."""
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


OPTIONS = CompareOptions


def add_arguments(parser: ArgumentParser) -> None:
    add_options(parser, CompareOptions, positional=("runs",), switches=("--no_wandb",))


def execute(options: CompareOptions) -> int:
    from lp_prune.analysis.compare.findings import comparison_findings
    from lp_prune.analysis.compare.plots import comparison_figures
    from lp_prune.analysis.compare.recipes import comparison_recipes
    from lp_prune.analysis.compare.report import iou_rows, perplexity_rows, write_reports
    from lp_prune.analysis.compare.tables import compare
    from lp_prune.analysis.runs import load_analysis, load_runs, wandb_destination
    from lp_prune.reporting import format_report_paths
    from lp_prune.tracking.wandb_runs import is_wandb_source, parse_source, resolve_sources

    sources = [parse_source(p) for p in options.runs if is_wandb_source(p)]  # bad forms fail before any download
    paths = resolve_sources(list(options.runs), Path(options.download_dir))
    runs = load_runs(paths)
    analysis = load_analysis(options.analysis, paths)  # a damaged analysis.json fails before anything is written
    out = writable_folder(Path(options.out) if options.out else Path(paths[0]) / "compare")
    result = compare(runs)
    figures = comparison_figures(result, out)
    findings = comparison_findings(result, analysis)
    reports = write_reports(result, figures, out, findings, comparison_recipes(result))
    for setting, found in findings.items():
        print(f"{setting}:\n" + "\n".join(f"  {f.claim} {f.verdict}: {f.evidence}" for f in found))
    location = None
    if not options.no_wandb:
        from lp_prune.tracking.wandb_logger import log_analysis_run

        tables = {}
        for setting, matrix in result.perplexity.items():
            tables[f"perplexity/{setting}"] = perplexity_rows(matrix)
            if result.accuracy.get(setting):
                tables[f"accuracy/{setting}"] = perplexity_rows(result.accuracy[setting], higher_is_better=True)
            if result.iou[setting]["pairs"]:
                tables[f"iou/{setting}"] = iou_rows(result.iou[setting])
        project, group = wandb_destination(runs, options.wandb_project, options.wandb_group)
        entity = sources[0].entity if sources else None
        name = f"compare-{out.parent.name}"
        location = log_analysis_run(project, group, name, tables, figures, out, entity=entity)
    written = {**reports, "figures": f"{out}/*.png ({len(figures)})"} if figures else dict(reports)
    print(format_report_paths(f"Comparison of {len(runs)} runs", written, location))
    return 0


def writable_folder(folder: Path) -> Path:
    """The report folder, made and tried now: the figures and tables take a while to compute first."""
    from lp_prune.tracking.run_dir import unwritable_reason

    reason = unwritable_reason(folder)
    if reason:
        raise UserError(f"cannot write the report into {folder} ({reason}); choose another --out")
    return folder
