"""`lp-prune analyze RUNS...`: cumulative SNR, LSAR, LAPE and mask structure of saved runs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from jsonargparse import ArgumentParser

from lp_prune.analysis.options import AnalyzeOptions
from lp_prune.cli_support import add_options
from lp_prune.commands import COMMANDS

HELP = COMMANDS["analyze"]


OPTIONS = AnalyzeOptions
JOB_TYPE = "analyze"
DEFAULT_ROOT = Path("analysis")  # analyses of run directories named one by one: ./analysis/<names>


def add_arguments(parser: ArgumentParser) -> None:
    add_options(parser, AnalyzeOptions, positional=("runs",), switches=("--include_bos", "--no_wandb"))


def report_folder(out: str | None, paths: list[str]) -> Path:
    """--out, never inside a run directory; by default `<sweep folder>/analysis` (where compare looks
    for it), or ./analysis/<names> when the first path is a run directory."""
    from lp_prune.commands.compare import check_outside_runs, comparison_name, enclosing_run_directory

    if out:
        return check_outside_runs(Path(out), "--out")
    first = Path(paths[0])
    if enclosing_run_directory(first) is None:
        return first / "analysis"
    return check_outside_runs(DEFAULT_ROOT / comparison_name(paths), "the default report folder")


def execute(options: AnalyzeOptions) -> int:
    from lp_prune.analysis.analyze.pipeline import analyze
    from lp_prune.analysis.analyze.plots import analysis_figures
    from lp_prune.analysis.analyze.report import wandb_tables, write_analysis_reports
    from lp_prune.analysis.runs import load_runs, warn_code_requests
    from lp_prune.commands.compare import comparison_name

    paths = list(options.runs)
    options.validate()  # before any run or model is read
    runs = load_runs(paths)
    trust = {"model.trust_remote_code": "trust_remote_code"}  # the one option that runs code here
    warn_code_requests(runs, trust, {"model.trust_remote_code": options.trust_remote_code})
    out = report_folder(options.out, paths)
    result = analyze(runs, options)
    figures = analysis_figures(result, out)
    reports = write_analysis_reports(result, figures, out)
    location = None
    if not options.no_wandb:
        from lp_prune.analysis.compare.findings import analysis_findings
        from lp_prune.analysis.runs import wandb_destination
        from lp_prune.tracking.wandb_analysis import (
            VERDICTS_KEY,
            log_analysis_run,
            masks_artifacts,
            panel_keys,
            verdicts_table,
        )

        project, group = wandb_destination(runs, options.wandb_project, options.wandb_group)
        tables = {VERDICTS_KEY: verdicts_table(analysis_findings(result)), **wandb_tables(result)}
        location = log_analysis_run(
            project,
            group,
            f"analyze-{comparison_name(paths)}",
            panel_keys(tables),
            panel_keys(figures),
            out,
            job_type=JOB_TYPE,
            config=asdict(options),
            inputs=masks_artifacts(run.path for run in runs),
            report=reports["html"],
        )
    from lp_prune.reporting import format_report_paths

    written = {**reports, "figures": f"{out}/*.png ({len(figures)})"} if figures else dict(reports)
    print(format_report_paths(f"Analysis of {len(runs)} runs", written, location))
    print(f"Peak memory: {result.peak_rss_mb:.0f} MB")
    return 0
