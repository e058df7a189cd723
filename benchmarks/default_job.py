"""The README's main job (`lp-prune run --config configs/default.yaml`) end to end: wall time, peak RSS,
phases; optionally against another checkout of lp_prune (its `src/` folder) on the same machine.

Runs alternate between the versions (this checkout, then the baseline, ...), each a fresh child
process measured through `_measure.py`. The dense baseline is cached after the first run of either
version (both use the same cache: same model and windows), so it is left out of the comparison by
a warm-up run of each version that is not counted.

Each phase with a FLOP count is printed beside its limit: the count (flops.py: the pruning step
for the default config's method and calibration size, the pruned perplexity evaluation over the
default's windows) divided by the matmul rate measured in the same run (before and after the runs).

    python benchmarks/default_job.py --repeats 2 --baseline-src /path/to/old/checkout/src
    python benchmarks/default_job.py --repeats 1 --lp-args "--compile_layers true"
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

import flops
import matmul_rate
from _common import (
    DEFAULT_CONFIG,
    child_env,
    fmt,
    import_lp_prune,
    machine_info,
    mask_agreement,
    progress,
    results_dir,
    run_measured,
)
from _common import write_report as write_results

PHASES = ("prepare_data", "load_model", "eval_dense", "prune", "eval_pruned", "save")
PRUNE_PHASES = ("prune_capture", "prune_collect", "prune_statistics", "prune_solve", "prune_propagate")


def run_once(src: Path, out: Path, lp_args: list[str], log: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "lp_prune", "run", "--config", str(DEFAULT_CONFIG), "--out", str(out),
           "--overwrite", "true", "--wandb.mode", "disabled", *lp_args]  # fmt: skip
    child = run_measured(cmd, log, child_env(src))
    if child.rc != 0:
        raise SystemExit(f"run failed (rc {child.rc}): see {child.log}")
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": child.wall_s, "peak_rss_mb": child.peak_rss_mb, "timings_s": summary["timings_s"],
            "perplexity": summary["perplexity"].get("pruned", {}), "folder": str(out)}  # fmt: skip


def phase_limits(lp_args: list[str]) -> dict[str, float]:
    """FLOPs of the phases with a count, for the default config (with --lp-args' method and sizes)."""
    import yaml

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data, prune = config["data"], config["prune"]
    options = dict(zip(lp_args[::2], lp_args[1::2], strict=False))
    method = options.get("--prune.method", prune["method"])
    nsamples, seqlen = (
        int(options.get("--data.nsamples", data["nsamples"])),
        int(options.get("--data.seqlen", data["seqlen"])),
    )
    model = flops._load_config(None)
    windows = int(data["eval_windows"]) * len(data["eval_languages"])
    return {
        "prune": flops.pruning_flops(model, nsamples, seqlen, method)["total"],
        "eval_pruned": flops.evaluation_flops(model, windows, int(data["eval_seqlen"]))["total"],
    }


def agreement(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Mask IoU (pooled, lowest per Linear) and the largest relative perplexity difference of two runs."""
    masks = mask_agreement(Path(a["folder"]), Path(b["folder"]))
    ppl = max(abs(a["perplexity"][k] / b["perplexity"][k] - 1) for k in a["perplexity"])
    return (f"masks: IoU {masks['iou']:.5f} (lowest per Linear {masks['min_module_iou']:.5f}, identical: "
            f"{masks['iou'] == 1.0}); largest pruned-perplexity difference {100 * ppl:.3f}%")  # fmt: skip


def limit_lines(results: list[dict[str, Any]], counts: dict[str, float], rates: list[float]) -> list[str]:
    """This checkout's phases beside their FLOP limits (count / matmul rate of this run)."""
    rate = sum(rates) / len(rates)
    rows = {phase: (statistics.median(r["timings_s"].get(phase, 0.0) for r in results), count)
            for phase, count in counts.items()}  # fmt: skip
    rows["together"] = (sum(s for s, _ in rows.values()), sum(counts.values()))
    lines = [
        f"matmul rate {rate:.1f} GFLOP/s (before, after: {', '.join(f'{r:.1f}' for r in rates)})",
        "",
        "| phase | median s | FLOP count | limit s | share of the limit | time / limit |",
        "|---|---|---|---|---|---|",
    ]
    for phase, (seconds, count) in rows.items():
        limit = count / (rate * 1e9)
        share = f"{limit / seconds:.2f} | {seconds / limit:.2f}x"
        lines.append(f"| {phase} | {seconds:.2f} | {count / 1e12:.3f} T | {limit:.2f} | {share} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2, help="counted runs per version (after one warm-up)")
    parser.add_argument("--baseline-src", type=Path, help="the src/ folder of another lp_prune checkout")
    parser.add_argument("--lp-args", default="", help="extra flags for this checkout's runs")
    parser.add_argument("--out", help="results folder (default: benchmarks/results/<timestamp>)")
    args = parser.parse_args(argv)

    versions = {"this checkout": (import_lp_prune(), shlex.split(args.lp_args))}
    if args.baseline_src:
        versions["baseline"] = (args.baseline_src.resolve(), [])
    out = results_dir(args.out)
    rates = [matmul_rate.measure(reps=5)["matmul_gflops"]]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in versions}
    for repeat in range(args.repeats + 1):  # repeat 0 warms the dense cache up and is not counted
        for name, (src, lp_args) in versions.items():
            progress(f"{name}, run {repeat}")
            slug = name.replace(" ", "-")
            result = run_once(src, out / f"{slug}-{repeat}", lp_args, out / f"{slug}-{repeat}.log")
            if repeat:
                runs[name].append(result)
    rates.append(matmul_rate.measure(reps=5)["matmul_gflops"])
    phases_shown = PHASES + PRUNE_PHASES
    lines = ["| version | wall s (median) | peak RSS MB | " + " | ".join(phases_shown) + " |",
             "|---" * (3 + len(phases_shown)) + "|"]  # fmt: skip
    medians = {}
    for name, results in runs.items():
        wall = statistics.median(r["wall_s"] for r in results)
        medians[name] = wall
        phases = [fmt(statistics.median(r["timings_s"].get(p, 0.0) for r in results)) for p in phases_shown]
        peak = max(r["peak_rss_mb"] for r in results)
        lines.append(f"| {name} | {wall:.1f} | {peak:.0f} | " + " | ".join(phases) + " |")
    if "baseline" in medians:
        lines.append(
            f"\nwall time ratio (this checkout / baseline): {medians['this checkout'] / medians['baseline']:.2f}"
        )
        try:
            lines.append("\n" + agreement(runs["this checkout"][0], runs["baseline"][0]))
        except Exception as error:  # e.g. a baseline whose mask file this version cannot read
            lines.append(f"\nmasks not compared: {error}")
    lines += ["", *limit_lines(runs["this checkout"], phase_limits(versions["this checkout"][1]), rates)]
    report = {"machine": machine_info(), "runs": runs, "lp_args": args.lp_args, "matmul_gflops": rates}
    write_results(out, report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
