"""The study grid (`lp-prune study`: sweeps/study.yaml) on this machine: one measured run per method,
every phase beside its FLOP limit, and the projected wall time of the whole grid.

1. the matmul rate, before and after (matmul_rate.py); every limit is a count divided by its mean;
2. one run of the grid per method (SparseGPT and Wanda, calibrated on the grid's first language and
   draw), exactly as `lp-prune study` runs it, each a child process measured by `_measure.py` (wall,
   peak RSS) with its own `timings_s`. Dense perplexity and dense downstream scores come from the
   cache when an earlier run made them (the grid computes them once); if a run computes them, they
   are shown and left out of the per-run figures;
3. the FLOP counts (flops.py): the pruning step, the pruned perplexity evaluation over the grid's
   windows, and the downstream scoring over the exact requests lm-eval makes for the grid's tasks
   (recorded without scoring: each context once, the LM head at the predicted tokens only);
4. `lp-prune analyze` over the measured runs, timed; its cost per run scales the grid's analysis;
5. the projection: grid runs x their method's measured wall time, plus the analysis, against the
   grid's FLOP limit (every run's counted work at the matmul rate).

    python benchmarks/study_projection.py [--out DIR] [--keep-runs]

About 15 minutes on the 2-core machine (two runs of ~5 minutes, the analysis, the counts).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import flops
import matmul_rate
import yaml
from _common import (
    DEFAULT_CONFIG,
    REPO,
    child_env,
    fmt,
    import_lp_prune,
    machine_info,
    progress,
    results_dir,
    run_measured,
)
from _common import write_report as write_results
from downstream_scoring import items_of

STUDY = REPO / "sweeps" / "study.yaml"
PER_RUN = ("prepare_data", "load_model", "prune", "eval_pruned", "downstream_pruned", "save")
DENSE = ("eval_dense", "downstream_dense")


def grid() -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """The study sweep's varying parameters (name -> values) and its fixed ones."""
    parameters = yaml.safe_load(STUDY.read_text())["parameters"]
    varying = {name: spec["values"] for name, spec in parameters.items() if "values" in spec}
    fixed = {name: spec["value"] for name, spec in parameters.items() if "value" in spec}
    return varying, fixed


def run_command(method: str, varying: dict[str, list[Any]], fixed: dict[str, Any], out: Path) -> list[str]:
    chosen = {name: values[0] for name, values in varying.items()} | fixed | {"prune.method": method}
    flags = [f"--{name}={value}" for name, value in chosen.items()]
    return [sys.executable, "-m", "lp_prune", "run", "--config", str(DEFAULT_CONFIG), *flags,
            "--out", str(out), "--overwrite", "true", "--wandb.mode", "disabled"]  # fmt: skip


def recorded_requests(fixed: dict[str, Any]) -> list:
    """The log-likelihood requests lm-eval makes for the grid's tasks, recorded, never scored."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from lp_prune.config import ModelConfig
    from lp_prune.evaluation.downstream import _quiet_lm_eval, plan_tasks, task_manager
    from lp_prune.languages import LANGUAGES
    from lp_prune.models.loading import load_model, load_tokenizer_and_config
    from lp_prune.storage.hub import hub_offline

    config = ModelConfig(name="gemma3-270m", dtype="float32")
    tokenizer, _ = load_tokenizer_and_config(config)
    plan = plan_tasks(str(fixed["eval.tasks"]).split(","), LANGUAGES, 0.2)
    requests: list = []

    class Recording(HFLM):
        def _loglikelihood_tokens(self, batch, *args, **kwargs):
            requests.extend(batch)
            return [(0.0, False)] * len(batch)

    with hub_offline(plan.local_only), _quiet_lm_eval():
        lm = Recording(pretrained=load_model(config).eval(), tokenizer=tokenizer, batch_size=8)
        lm_eval.simple_evaluate(model=lm, tasks=list(plan.tasks), task_manager=task_manager(plan),
                                limit=int(fixed["eval.limit"]))  # fmt: skip
    return requests


def phase_counts(method: str, fixed: dict[str, Any], model_config: dict, items: list) -> dict[str, float]:
    defaults = yaml.safe_load(DEFAULT_CONFIG.read_text())["data"]
    windows = int(fixed["data.eval_windows"]) * len(defaults["eval_languages"])
    return {
        "prune": flops.pruning_flops(model_config, int(defaults["nsamples"]), int(defaults["seqlen"]), method)["total"],
        "eval_pruned": flops.evaluation_flops(model_config, windows, int(defaults["eval_seqlen"]))["total"],
        "downstream_pruned": flops.scoring_flops(model_config, items)["total"],
    }


def phase_table(runs: dict[str, dict[str, Any]], counts: dict[str, dict[str, float]], rate: float) -> list[str]:
    lines = ["| method | phase | measured s | FLOP count | limit s | share of the limit |", "|---|---|---|---|---|---|"]
    for method, run in runs.items():
        for phase in PER_RUN:
            seconds = run["timings_s"].get(phase)
            count = counts[method].get(phase)
            limit = count / (rate * 1e9) if count else None
            share = f"{limit / seconds:.2f}" if limit and seconds else "-"
            cells = [fmt(seconds), f"{count / 1e12:.3f} T" if count else "-", fmt(limit), share]
            lines.append(f"| {method} | {phase} | " + " | ".join(cells) + " |")
        dense = {p: run["timings_s"][p] for p in DENSE if p in run["timings_s"]}
        lines.append(f"| {method} | run wall (child process) | {fmt(run['wall_s'])} | | | |")
        if dense:
            lines.append(f"| {method} | dense, once per grid (not cached yet) | {fmt(sum(dense.values()))} | | | |")
    return lines


def per_run_seconds(run: dict[str, Any]) -> float:
    """The run's wall time without the dense evaluations that the grid's later runs read from the cache."""
    return run["wall_s"] - sum(run["timings_s"].get(p, 0.0) for p in DENSE)


def projection(varying: dict[str, list[Any]], runs: dict[str, dict[str, Any]], counts: dict[str, dict[str, float]],
               analysis_s_per_run: float, rate: float) -> tuple[list[str], dict[str, float]]:  # fmt: skip
    per_method = len(varying["data.seed"]) * len(varying["data.calibration_language"])
    measured = {m: per_method * per_run_seconds(run) for m, run in runs.items()}
    n_runs = per_method * len(runs)
    analysis = n_runs * analysis_s_per_run
    limit = sum(per_method * sum(c.values()) for c in counts.values()) / (rate * 1e9)
    total = sum(measured.values()) + analysis
    lines = [
        f"Grid: {n_runs} runs ({per_method} per method). Projected wall time "
        f"{total / 60:.0f} min: "
        + ", ".join(f"{m} {s / 60:.0f} min" for m, s in measured.items())
        + f", analysis {analysis / 60:.0f} min ({analysis_s_per_run:.0f} s per run); the goal is 60 min.",
        f"FLOP limit of the grid's runs (prune + pruned perplexity + downstream, every run): {limit / 60:.1f} min "
        f"at {rate:.1f} GFLOP/s; the runs' projected time is {sum(measured.values()) / limit:.2f}x that limit.",
    ]
    return lines, {"projected_s": total, "runs_s": sum(measured.values()), "analysis_s": analysis,
                   "limit_s": limit}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="sparsegpt,wanda")
    parser.add_argument("--out", help="results folder (default: benchmarks/results/<timestamp>)")
    parser.add_argument("--keep-runs", action="store_true", help="keep the measured run folders")
    args = parser.parse_args(argv)
    root = import_lp_prune()
    out = results_dir(args.out)
    varying, fixed = grid()
    rates = [matmul_rate.measure(reps=5)["matmul_gflops"]]
    runs: dict[str, dict[str, Any]] = {}
    for method in args.methods.split(","):
        progress(f"study run: {method}")
        folder = out / "runs" / method
        child = run_measured(run_command(method, varying, fixed, folder), out / f"{method}.log", child_env(root))
        if child.rc != 0:
            raise SystemExit(f"{method} run failed (rc {child.rc}): see {child.log}")
        summary = json.loads((folder / "summary.json").read_text())
        runs[method] = {"wall_s": child.wall_s, "peak_rss_mb": child.peak_rss_mb, "timings_s": summary["timings_s"]}
    progress("analyze over the measured runs")
    from lp_prune.sweeps.study import StudyOptions

    study = StudyOptions()  # analyze as `lp-prune study` runs it: its windows and window length
    analyze = [sys.executable, "-m", "lp_prune", "analyze", *(str(out / "runs" / m) for m in runs),
               "--out", str(out / "analysis"), "--windows", str(study.windows), "--seqlen", str(study.seqlen),
               "--batch_size", str(study.batch_size)]  # fmt: skip
    analysis = run_measured(analyze, out / "analyze.log", child_env(root))
    if analysis.rc != 0:
        raise SystemExit(f"analyze failed (rc {analysis.rc}): see {analysis.log}")
    progress("recording the grid's downstream requests")
    requests = recorded_requests(fixed)
    rates.append(matmul_rate.measure(reps=5)["matmul_gflops"])
    rate = sum(rates) / len(rates)

    model_config = flops._load_config(None)
    items = items_of(requests)
    counts = {method: phase_counts(method, fixed, model_config, items) for method in runs}
    lines = [f"matmul rate {rate:.1f} GFLOP/s (before, after: {', '.join(f'{r:.1f}' for r in rates)}); "
             f"downstream: {len(items)} items, {len(requests)} requests", "",
             *phase_table(runs, counts, rate), ""]  # fmt: skip
    summary_lines, totals = projection(varying, runs, counts, analysis.wall_s / len(runs), rate)
    lines += summary_lines
    report = {"machine": machine_info(), "matmul_gflops": rates, "runs": runs, "flops": counts,
              "analyze_s": analysis.wall_s, "items": len(items), "requests": len(requests), **totals}  # fmt: skip
    if not args.keep_runs:
        shutil.rmtree(out / "runs", ignore_errors=True)
    write_results(out, report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
