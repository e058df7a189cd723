"""`lp-prune compare RUNS...`: the study's cross-run tables and figures from saved runs."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

HELP = "Compare runs (run or sweep directories): perplexity matrix, mask IoU, per-layer SNR; report + W&B."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("runs", type=str, nargs="+", help="run directories and/or sweep folders")
    parser.add_argument("--out", type=str | None, default=None, help="report folder (default: <first>/compare)")
    parser.add_argument(
        "--analysis",
        type=str | None,
        default=None,
        help="analysis.json of `lp-prune analyze` for claims C2, C5, C6 (default: <first>/analysis/analysis.json)",
    )
    parser.add_argument("--wandb_project", type=str, default="lp_prune", help="project of the analysis run")
    parser.add_argument("--no_wandb", action="store_true", help="do not log an analysis run to W&B")


def execute(args: Namespace) -> int:
    from lp_prune.analysis.compare import compare, load_analysis, load_runs
    from lp_prune.analysis.findings import comparison_findings, comparison_recipes
    from lp_prune.analysis.plots import comparison_figures
    from lp_prune.analysis.report import iou_rows, perplexity_rows, write_reports

    paths = list(args.runs)
    runs = load_runs(paths)
    out = Path(args.out) if args.out else Path(paths[0]) / "compare"
    result = compare(runs)
    figures = comparison_figures(result, out)
    findings = comparison_findings(result, load_analysis(args.analysis, paths))
    reports = write_reports(result, figures, out, findings, comparison_recipes(result))
    for setting, found in findings.items():
        print(f"{setting}:\n" + "\n".join(f"  {f.claim} {f.verdict}: {f.evidence}" for f in found))
    if not args.no_wandb:
        from lp_prune.tracking.wandb_logger import log_analysis_run

        tables = {}
        for setting, matrix in result.perplexity.items():
            tables[f"perplexity/{setting}"] = perplexity_rows(matrix)
            if result.accuracy.get(setting):
                tables[f"accuracy/{setting}"] = perplexity_rows(result.accuracy[setting], higher_is_better=True)
            if result.iou[setting]["pairs"]:
                tables[f"iou/{setting}"] = iou_rows(result.iou[setting])
        group = runs[0].config.get("wandb", {}).get("group")
        log_analysis_run(args.wandb_project, group, f"compare-{out.parent.name}", tables, figures, out)
    print(f"Report: {reports['html']} (and {reports['markdown'].name}, {len(figures)} figures)")
    return 0
