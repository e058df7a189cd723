"""`lp-prune analyze RUNS...`: cumulative SNR, LSAR, LAPE and mask structure of saved runs."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from lp_prune.config import LANGUAGES

HELP = (
    "Analyse runs against their dense model: cumulative SNR per layer and language, LSAR language-specific "
    "vs agnostic error, LAPE neurons, mask disagreement; plots, report, JSON + W&B."
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("runs", type=str, nargs="+", help="run directories and/or sweep folders (one model)")
    parser.add_argument("--languages", type=list[str], default=list(LANGUAGES), help="evaluation languages")
    parser.add_argument("--windows", type=int, default=4, help="held-out windows per language")
    parser.add_argument("--seqlen", type=int, default=128, help="tokens per window (BOS included)")
    parser.add_argument("--batch_size", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--lsar_rank", type=int | None, default=None, help="LSAR subspace rank (default: languages-1)")
    parser.add_argument("--lape_top_rate", type=float, default=0.01, help="share of all FFN neurons selected by LAPE")
    parser.add_argument("--lape_bar", type=float, default=0.95, help="percentile of all activation probabilities")
    parser.add_argument("--include_bos", action="store_true", help="count the BOS position in the statistics")
    parser.add_argument("--out", type=str | None, default=None, help="report folder (default: <first>/analysis)")
    parser.add_argument(
        "--wandb_project", type=str | None, default=None, help="project of the analysis run (default: the runs')"
    )
    parser.add_argument(
        "--wandb_group", type=str | None, default=None, help="group of the analysis run (default: the runs')"
    )
    parser.add_argument("--no_wandb", action="store_true", help="do not log an analysis run to W&B")


def execute(args: Namespace) -> int:
    from lp_prune.analysis.analyze import AnalyzeOptions, analyze
    from lp_prune.analysis.analyze_plots import analysis_figures
    from lp_prune.analysis.analyze_report import wandb_tables, write_analysis_reports
    from lp_prune.analysis.compare import load_runs

    paths = list(args.runs)
    options = AnalyzeOptions(
        languages=list(args.languages),
        windows=args.windows,
        seqlen=args.seqlen,
        batch_size=args.batch_size,
        lsar_rank=args.lsar_rank,
        lape_top_rate=args.lape_top_rate,
        lape_bar=args.lape_bar,
        include_bos=args.include_bos,
    )
    options.validate()  # before any run or model is read
    runs = load_runs(paths)
    out = Path(args.out) if args.out else Path(paths[0]) / "analysis"
    result = analyze(runs, options)
    figures = analysis_figures(result, out)
    reports = write_analysis_reports(result, figures, out)
    location = None
    if not args.no_wandb:
        from lp_prune.analysis.compare import wandb_destination
        from lp_prune.tracking.wandb_logger import log_analysis_run

        project, group = wandb_destination(runs, args.wandb_project, args.wandb_group)
        name = f"analyze-{out.parent.name}"
        location = log_analysis_run(project, group, name, wandb_tables(result), figures, out)
    from lp_prune.reporting import format_report_paths

    written = {**reports, "figures": f"{out}/*.png ({len(figures)})"} if figures else dict(reports)
    print(format_report_paths(f"Analysis of {len(runs)} runs", written, location))
    print(f"Peak memory: {result['peak_rss_mb']:.0f} MB")
    return 0
