"""`lp-prune compare RUNS...`: the study's cross-run tables and figures from saved runs.

    lp-prune compare runs/sweeps/languages-default          # run directories or sweep folders
    lp-prune compare wandb:ENTITY/PROJECT/SWEEP_ID           # a W&B sweep's runs, downloaded first
    lp-prune compare wandb:ENTITY/PROJECT/group=NAME         # a W&B group's runs

W&B runs are downloaded into --download_dir/ENTITY/PROJECT/sweep-ID (or group-NAME) as run
directories (tracking.wandb_runs); the report goes to <that folder>/compare unless --out says.
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from lp_prune.errors import UserError

HELP = "Compare runs (run or sweep directories, W&B sweeps or groups): perplexity, mask IoU, SNR; report + W&B."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "runs", type=str, nargs="+", help="run directories, sweep folders, wandb:ENTITY/PROJECT/SWEEP_ID or .../group=G"
    )
    parser.add_argument("--out", type=str | None, default=None, help="report folder (default: <first>/compare)")
    parser.add_argument(
        "--analysis",
        type=str | None,
        default=None,
        help="analysis.json of `lp-prune analyze` for claims C2, C5, C6 (default: <first>/analysis/analysis.json)",
    )
    parser.add_argument(
        "--download_dir", type=str, default="runs/wandb", help="where the runs of wandb: sources are written"
    )
    parser.add_argument(
        "--wandb_project", type=str | None, default=None, help="project of the analysis run (default: the runs')"
    )
    parser.add_argument(
        "--wandb_group", type=str | None, default=None, help="group of the analysis run (default: the runs')"
    )
    parser.add_argument("--no_wandb", action="store_true", help="do not log an analysis run to W&B")


def execute(args: Namespace) -> int:
    from lp_prune.analysis.compare import compare, load_analysis, load_runs, wandb_destination
    from lp_prune.analysis.findings import comparison_findings, comparison_recipes
    from lp_prune.analysis.plots import comparison_figures
    from lp_prune.analysis.report import iou_rows, perplexity_rows, write_reports
    from lp_prune.reporting import format_report_paths
    from lp_prune.tracking.wandb_runs import is_wandb_source, parse_source, resolve_sources

    sources = [parse_source(p) for p in args.runs if is_wandb_source(p)]  # bad forms fail before any download
    paths = resolve_sources(list(args.runs), Path(args.download_dir))
    runs = load_runs(paths)
    out = writable_folder(Path(args.out) if args.out else Path(paths[0]) / "compare")
    result = compare(runs)
    figures = comparison_figures(result, out)
    findings = comparison_findings(result, load_analysis(args.analysis, paths))
    reports = write_reports(result, figures, out, findings, comparison_recipes(result))
    for setting, found in findings.items():
        print(f"{setting}:\n" + "\n".join(f"  {f.claim} {f.verdict}: {f.evidence}" for f in found))
    location = None
    if not args.no_wandb:
        from lp_prune.tracking.wandb_logger import log_analysis_run

        tables = {}
        for setting, matrix in result.perplexity.items():
            tables[f"perplexity/{setting}"] = perplexity_rows(matrix)
            if result.accuracy.get(setting):
                tables[f"accuracy/{setting}"] = perplexity_rows(result.accuracy[setting], higher_is_better=True)
            if result.iou[setting]["pairs"]:
                tables[f"iou/{setting}"] = iou_rows(result.iou[setting])
        project, group = wandb_destination(runs, args.wandb_project, args.wandb_group)
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
