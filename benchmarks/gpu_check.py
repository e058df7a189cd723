"""The packaged Gemma-3-270M pruned on a GPU against the same config on the CPU (driver of gpu_check.sh).

For float32 and bfloat16 and for SparseGPT and Wanda, one run on the GPU and one on the CPU, each a
child process (`gpu_check.py one ...`, which calls `lp_prune.pipeline.run(config)` itself so that it
can read torch.cuda.max_memory_allocated() of the run afterwards). Then a Markdown table per config:
time per phase (summary.json timings_s), peak device memory (allocated and reserved by PyTorch's
caching allocator; the CUDA context is not in either) against `lp-prune estimate`'s peak for the same
config (which counts the context as "runtime"), mask IoU against the CPU run (pooled over all
Linears, and the lowest single Linear), and pruned perplexity of the GPU run beside the CPU run's.

Sized to take a few minutes on an H200 with 16 CPU cores (the CPU runs dominate): the default
config's method settings, 16 calibration windows x 256 tokens, perplexity on 4 windows x 256 tokens
of en and sw, no dense baseline, nothing saved but masks. Results go to
benchmarks/results/<timestamp>-gpu-check/ (results.json, results.md, the run directories and logs).

    python benchmarks/gpu_check.py all                     # what gpu_check.sh runs on a CUDA machine
    python benchmarks/gpu_check.py all --target cpu --model DIR --nsamples 4 --seqlen 32   # smoke test, no GPU
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from _common import (
    DEFAULT_CONFIG,
    child_env,
    fmt,
    import_lp_prune,
    log_tail,
    machine_info,
    progress,
    results_dir,
    run_measured,
    write_report,
)

DTYPES = ("float32", "bfloat16")
METHODS = ("sparsegpt", "wanda")
MIB = 2**20
PHASES = ("load_model", "prune", "prune_statistics", "prune_solve", "eval_pruned")
RESULT_FILE = "gpu_check.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["all", "one"])
    parser.add_argument("--model", default="gemma3-270m", help="model.name (default: the packaged Gemma)")
    parser.add_argument("--nsamples", type=int, default=16)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--eval-windows", type=int, default=4)
    parser.add_argument("--eval-seqlen", type=int, default=256)
    parser.add_argument("--eval-languages", default="en,sw")
    parser.add_argument("--target", choices=["cuda", "cpu"], default="cuda", help="where the checked runs go")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per child run")
    parser.add_argument("--out", help="results folder (all) or run directory (one)")
    # one: a single run
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--method", choices=METHODS, default="sparsegpt")
    args = parser.parse_args()
    return run_one(args) if args.mode == "one" else run_all(args)


def run_flags(args: argparse.Namespace, device: str, dtype: str, method: str, out: Path) -> list[str]:
    """`lp-prune run` flags of one run: the default config with the small sizes above."""
    return [
        "--config", str(DEFAULT_CONFIG),
        "--model.name", args.model,
        "--model.dtype", dtype,
        "--prune.method", method,
        "--accelerator", "gpu" if device == "cuda" else "cpu",
        "--devices", "1",
        "--data.nsamples", str(args.nsamples),
        "--data.seqlen", str(args.seqlen),
        "--data.eval_windows", str(args.eval_windows),
        "--data.eval_seqlen", str(args.eval_seqlen),
        "--data.eval_languages", f"[{args.eval_languages}]",
        "--eval.dense_baseline", "false",
        "--checkpoint", "false",
        "--wandb.mode", "disabled",
        "--overwrite", "true",
        "--out", str(out),
    ]  # fmt: skip


# --- one run (a child process) --------------------------------------------------------------------


def run_one(args: argparse.Namespace) -> int:
    """Run one config in this process and write its peak device memory and estimate to RESULT_FILE."""
    import torch

    import_lp_prune()
    from lp_prune.cli import build_parser
    from lp_prune.config import run_config_from
    from lp_prune.memory import ModelShape, estimate_memory
    from lp_prune.models.loading import load_tokenizer_and_config
    from lp_prune.pipeline import run

    out = Path(args.out)
    parser = build_parser()
    parsed = parser.instantiate_classes(
        parser.parse_args(["run", *run_flags(args, args.device, args.dtype, args.method, out)])
    )
    config = run_config_from(parsed.run)
    shape = ModelShape.from_config(load_tokenizer_and_config(config.model)[1])
    estimate = estimate_memory(config, shape, args.device)
    on_gpu = args.device == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    run(config)
    result = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if on_gpu else None,
        "peak_allocated_mb": torch.cuda.max_memory_allocated() / MIB if on_gpu else None,
        "peak_reserved_mb": torch.cuda.max_memory_reserved() / MIB if on_gpu else None,
        "estimate_peak_mb": estimate.peak / MIB,
        "estimate_runtime_mb": estimate.runtime / MIB,  # the CUDA context (or host libraries) in the estimate
        "estimate": {key: value / MIB for key, value in vars(estimate).items() if isinstance(value, int)},
    }
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return 0


# --- all runs and the table -----------------------------------------------------------------------


def run_all(args: argparse.Namespace) -> int:
    lp_root = import_lp_prune()
    out = results_dir(args.out or _default_out())
    env = child_env(lp_root)
    rows: list[dict[str, Any]] = []
    for dtype in DTYPES:
        for method in METHODS:
            checked = _child(args, "check", args.target, dtype, method, out, env)
            reference = _child(args, "reference", "cpu", dtype, method, out, env)
            rows.append(_compare(dtype, method, checked, reference, args.eval_languages.split(",")))
    settings = {key: getattr(args, key) for key in ("model", "nsamples", "seqlen", "eval_windows", "eval_seqlen")}
    report = {"machine": machine_info(), "settings": settings, "target": args.target, "rows": rows}
    write_report(out, report, _markdown(rows, args))
    return 0 if all(row["ok"] for row in rows) else 1


def _default_out() -> str:
    from datetime import datetime

    from _common import BENCH_DIR

    return str(BENCH_DIR / "results" / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-gpu-check")


def _child(
    args: argparse.Namespace, role: str, device: str, dtype: str, method: str, out: Path, env: dict
) -> dict[str, Any]:
    run_dir = out / f"{role}-{device}-{dtype}-{method}"
    cmd = [sys.executable, str(Path(__file__).resolve()), "one", "--device", device, "--dtype", dtype]
    cmd += ["--method", method, "--out", str(run_dir), "--model", args.model, "--nsamples", str(args.nsamples)]
    cmd += ["--seqlen", str(args.seqlen), "--eval-windows", str(args.eval_windows)]
    cmd += ["--eval-seqlen", str(args.eval_seqlen), "--eval-languages", args.eval_languages]
    progress(f"{run_dir.name} ...")
    child = run_measured(["timeout", str(int(args.timeout)), *cmd], out / "logs" / f"{run_dir.name}.log", env)
    result: dict[str, Any] = {"run_dir": str(run_dir), "rc": child.rc, "wall_s": child.wall_s, "log": child.log}
    if child.rc != 0:
        progress(f"{run_dir.name} failed (exit {child.rc}):\n{log_tail(child.log)}")
        return result
    result["summary"] = json.loads((run_dir / "summary.json").read_text())
    result["memory"] = json.loads((run_dir / RESULT_FILE).read_text())
    progress(f"{run_dir.name}: {child.wall_s:.1f} s")
    return result


def _compare(dtype: str, method: str, target: dict[str, Any], cpu: dict[str, Any], languages: list[str]) -> dict:
    from lp_prune.analysis.compare.mask_iou import pooled_mask_iou

    row: dict[str, Any] = {"dtype": dtype, "method": method, "ok": target["rc"] == 0 and cpu["rc"] == 0}
    row["target"], row["cpu"] = target, cpu
    if not row["ok"]:
        return row
    pooled, worst = pooled_mask_iou(Path(target["run_dir"]), Path(cpu["run_dir"]))
    row["mask_iou"], row["mask_iou_min"] = pooled, worst
    ppl = {stage: run["summary"]["perplexity"].get("pruned", {}) for stage, run in (("target", target), ("cpu", cpu))}
    row["perplexity"] = {lang: (ppl["target"].get(lang), ppl["cpu"].get(lang)) for lang in languages}
    return row


def _markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    target = args.target
    device = next((r["target"]["memory"]["device_name"] for r in rows if r["ok"]), None) or target
    lines = [
        f"### gpu_check: {args.model} on {device} vs CPU",
        "",
        f"{args.nsamples} x {args.seqlen} calibration tokens, 50% unstructured (configs/default.yaml), "
        f"perplexity on {args.eval_windows} x {args.eval_seqlen} tokens of {args.eval_languages}; times in s "
        f"(summary.json timings_s), memory in MiB (PyTorch's peak allocated / reserved, without the CUDA "
        f"context; the estimate counts {_runtime(rows):.0f} MiB of runtime: the context on a GPU).",
        "",
        "| dtype | method | load | prune | statistics | solve | eval | CPU prune | peak alloc | peak reserved "
        "| estimate | mask IoU vs CPU (min) | pruned ppl " + target + " / CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if not row["ok"]:
            lines.append(f"| {row['dtype']} | {row['method']} | failed: see {row['target'].get('log')} |")
            continue
        times = row["target"]["summary"]["timings_s"]
        memory = row["target"]["memory"]
        cells = [row["dtype"], row["method"], *(fmt(times.get(phase), 1) for phase in PHASES)]
        cells.append(fmt(row["cpu"]["summary"]["timings_s"].get("prune"), 1))
        cells += [fmt(memory["peak_allocated_mb"], 0), fmt(memory["peak_reserved_mb"], 0)]
        cells.append(fmt(memory["estimate_peak_mb"], 0))
        cells.append(f"{row['mask_iou']:.4f} ({row['mask_iou_min']:.4f})")
        cells.append(", ".join(f"{lang} {fmt(a)} / {fmt(b)}" for lang, (a, b) in row["perplexity"].items()))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _runtime(rows: list[dict[str, Any]]) -> float:
    return next((r["target"]["memory"]["estimate_runtime_mb"] for r in rows if r["ok"]), 0.0)


if __name__ == "__main__":
    sys.exit(main())
