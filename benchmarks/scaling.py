"""How lp_prune's pruning time and memory grow with the calibration size (n samples x L tokens).

For every n in --nsamples and L in --seqlens (products above --max-tokens skipped) the script makes
the calibration token ids with lp_prune's data path, runs `python -m lp_prune run` on them as a child
process (perplexity off, model not saved), and records:
- prune_s (summary.json timings_s.prune) and every other timings_s key that starts with "prune"
  (prune_solve, and any finer phases the run reports), as seconds and as shares of prune_s;
- the child's whole-process wall time and peak RSS (os.wait4, via the _measure.py launcher);
- the analytic FLOPs of the step (flops.py) and the achieved GFLOP/s (and its share of --matmul-gflops).
Then it fits prune_s = a + b * tokens by least squares (tokens = n * L) and reports a, b and R^2.
Writes results.json and results.md (benchmarks/results/<timestamp>-scaling/ unless --out).

    python benchmarks/scaling.py --method sparsegpt
    python benchmarks/scaling.py --nsamples 4 --seqlens 64          # smoke test
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
from typing import Any

from _common import (
    child_env,
    flop_options,
    fmt,
    import_lp_prune,
    log_tail,
    lp_prune_command,
    machine_info,
    make_token_file,
    parse_ints,
    progress,
    results_dir,
    run_measured,
    write_report,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="lp_prune pruning time and memory vs calibration size")
    parser.add_argument("--method", default="sparsegpt", choices=["sparsegpt", "wanda", "magnitude"])
    parser.add_argument("--nsamples", default="32,64,128,256", help="comma-separated")
    parser.add_argument("--seqlens", default="256,512,1024", help="comma-separated")
    parser.add_argument("--max-tokens", type=int, help="skip settings with n * L above this")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, help="lp_prune data.batch_size (default: its config, 8)")
    parser.add_argument("--threads", type=int, help="OMP/MKL threads for the runs (default: torch's)")
    parser.add_argument("--matmul-gflops", type=float, help="this machine's matmul rate (matmul_rate.py)")
    parser.add_argument("--calibration-language", default="en")
    parser.add_argument("--out", help="results folder (default: benchmarks/results/<timestamp>-scaling)")
    parser.add_argument("--lp-args", default="", help="extra lp-prune flags, e.g. '--prune.single_pass true'")
    args = parser.parse_args(argv)
    args.nsamples = parse_ints(args.nsamples)
    args.seqlens = parse_ints(args.seqlens)
    return args


def fit_line(xs: list[float], ys: list[float]) -> dict[str, float] | None:
    """Least squares y = a + b x with R^2; None with fewer than two distinct x."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    b = sxy / sxx
    a = my - b * mx
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return {"a_s": a, "b_s_per_token": b, "r2": 1 - ss_res / ss_tot if ss_tot else float("nan"), "points": n}


def markdown(report: dict[str, Any]) -> str:
    rows = [r for r in report["runs"] if r["rc"] == 0]
    phases = sorted({k for r in rows for k in r["prune_phases_s"] if k != "prune"})
    lines = [
        f"# lp_prune scaling: {report['settings']['method']}, packaged Gemma-3-270M",
        "",
        "prune_s: timings_s.prune of summary.json; phases: the other timings_s keys starting with 'prune', as "
        "share of prune_s; process_s and peak_rss_mb: the whole child process; GFLOP/s: flops.py's count / prune_s.",
        "",
        "| n | L | tokens | prune_s | "
        + "".join(f"{p} share | " for p in phases)
        + "process_s | peak_rss_mb | GFLOP | GFLOP/s | of matmul |",
        "|---|---|---|---|" + "---|" * len(phases) + "---|---|---|---|---|",
    ]
    for r in rows:
        shares = "".join(f"{fmt(r['prune_shares'].get(p), 3)} | " for p in phases)
        lines.append(
            f"| {r['nsamples']} | {r['seqlen']} | {r['tokens']} | {fmt(r['prune_s'])} | {shares}"
            f"{fmt(r['process_s'])} | {fmt(r['peak_rss_mb'], 0)} | {fmt(r['gflop'], 1)} | "
            f"{fmt(r['gflops_per_s'], 1)} | {fmt(r.get('fraction_of_matmul'), 3)} |"
        )
    fit = report.get("fit")
    lines.append("")
    if fit:
        lines.append(
            f"Fit prune_s = a + b * tokens: a = {fit['a_s']:.3f} s, b = {fit['b_s_per_token'] * 1e3:.4f} ms/token, "
            f"R^2 = {fit['r2']:.4f} ({fit['points']} points)."
        )
    else:
        lines.append("Fit: needs at least two different token counts.")
    failed = [r for r in report["runs"] if r["rc"] != 0]
    if failed:
        lines += [
            "",
            "Failed: " + "; ".join(f"{r['nsamples']}x{r['seqlen']} rc {r['rc']} ({r['log']})" for r in failed),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = import_lp_prune()
    from flops import pruning_flops

    from lp_prune.config import ModelConfig
    from lp_prune.models.loading import load_tokenizer_and_config

    _tokenizer, model_config = load_tokenizer_and_config(ModelConfig())
    env = child_env(root, args.threads)
    out = results_dir(args.out or _default_out())
    progress(f"results in {out}")
    grid = [(n, length) for length in args.seqlens for n in args.nsamples]
    skipped = [(n, length) for n, length in grid if args.max_tokens and n * length > args.max_tokens]
    grid = [g for g in grid if g not in skipped]
    if skipped:
        progress("skipped (above --max-tokens): " + ", ".join(f"{n}x{length}" for n, length in skipped))

    runs = []
    total = len(grid) * args.repeats
    step = 0
    for n, length in grid:
        token_file = make_token_file(out / "tokens" / f"{n}x{length}.pt", n, length, args.calibration_language)
        flops = pruning_flops(model_config, n, length, args.method, **flop_options(shlex.split(args.lp_args)))
        for repeat in range(args.repeats):
            step += 1
            progress(f"[{step}/{total}] {args.method} {n}x{length} repeat {repeat + 1}/{args.repeats}")
            run_dir = out / "runs" / f"{n}x{length}-r{repeat}"
            cmd = lp_prune_command(
                args.method, token_file, n, length, run_dir, False, args.batch_size, extra=shlex.split(args.lp_args)
            )
            child = run_measured(cmd, out / "runs" / f"{n}x{length}-r{repeat}.log", env)
            record: dict[str, Any] = {
                "nsamples": n,
                "seqlen": length,
                "tokens": n * length,
                "repeat": repeat,
                "rc": child.rc,
                "process_s": child.wall_s,
                "peak_rss_mb": child.peak_rss_mb,
                "user_s": child.user_s,
                "sys_s": child.sys_s,
                "log": child.log,
                "prune_s": None,
                "prune_phases_s": {},
                "prune_shares": {},
                "gflop": flops["total"] / 1e9,
                "flops": flops["flops"],
            }
            summary_path = run_dir / "summary.json"
            if child.rc == 0 and summary_path.exists():
                timings = json.loads(summary_path.read_text()).get("timings_s", {})
                phases = {k: v for k, v in timings.items() if k.startswith("prune")}
                prune_s = timings.get("prune")
                record.update(prune_s=prune_s, prune_phases_s=phases, timings_s=timings)
                if prune_s:
                    record["prune_shares"] = {k: v / prune_s for k, v in phases.items()}
                    record["gflops_per_s"] = flops["total"] / prune_s / 1e9
                    if args.matmul_gflops:
                        record["fraction_of_matmul"] = record["gflops_per_s"] / args.matmul_gflops
                progress(
                    f"  prune_s {fmt(prune_s)}  process_s {fmt(child.wall_s)}  "
                    f"peak_rss_mb {fmt(child.peak_rss_mb, 0)}"
                    f"  phases {', '.join(f'{k} {v:.1f}' for k, v in phases.items())}"
                )
                shutil.rmtree(run_dir / "progress", ignore_errors=True)
            else:
                progress(f"  FAILED (rc {child.rc}); log {child.log}:\n{log_tail(child.log)}")
            runs.append(record)

    ok = [r for r in runs if r["rc"] == 0 and r["prune_s"] is not None]
    fit = fit_line([r["tokens"] for r in ok], [r["prune_s"] for r in ok])
    report = {
        "settings": {
            "method": args.method,
            "nsamples": args.nsamples,
            "seqlens": args.seqlens,
            "max_tokens": args.max_tokens,
            "skipped": [f"{n}x{length}" for n, length in skipped],
            "repeats": args.repeats,
            "batch_size": args.batch_size or "config default",
            "threads": args.threads or "torch default",
            "matmul_gflops": args.matmul_gflops,
        },
        "machine": machine_info(),
        "runs": runs,
        "fit": fit,
    }
    write_report(out, report, markdown(report))
    return 0 if len(ok) == len(runs) else 1


def _default_out() -> str:
    from datetime import datetime

    from _common import BENCH_DIR

    return str(BENCH_DIR / "results" / (datetime.now().strftime("%Y%m%d-%H%M%S") + "-scaling"))


if __name__ == "__main__":
    sys.exit(main())
