"""This machine's dense float32 matmul rate (GFLOP/s) at the shapes of the pruning workload.

The shapes are those of Gemma-3-270M's pruning step with T calibration tokens (default 8192 =
32 x 256): the Linear forwards ([T x 640] @ [640 x 2048] as in gate/up, [T x 2048] @ [2048 x 640] as
in down), the Gram products X^T X of a 640-wide and a 2048-wide input, and SparseGPT's lazy batch
update ([2048 x 128] @ [128 x 512]). Each shape: warm-up runs, then --reps timed runs; best and
median rate, with torch's default thread count (or --threads). The "rate" used by the efficiency
report is the median over the shapes of each shape's best rate.

One extra, informative row: SparseGPT's column update (addr_ on a [2048 x 128] block) on one thread,
which lp_prune runs single-threaded; it is memory-bound and far below the matmul rate.

    python benchmarks/matmul_rate.py [--tokens 8192] [--reps 10] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch


def shapes(tokens: int) -> list[dict[str, Any]]:
    """(name, A shape, B shape, transpose A) of the measured products."""
    return [
        {"name": f"linear [{tokens}x640]@[640x2048]", "a": (tokens, 640), "b": (640, 2048), "ta": False},
        {"name": f"linear [{tokens}x2048]@[2048x640]", "a": (tokens, 2048), "b": (2048, 640), "ta": False},
        {"name": f"gram [{tokens}x640]^T@[{tokens}x640]", "a": (tokens, 640), "b": (tokens, 640), "ta": True},
        {"name": f"gram [{tokens}x2048]^T@[{tokens}x2048]", "a": (tokens, 2048), "b": (tokens, 2048), "ta": True},
        {"name": "sparsegpt lazy update [2048x128]@[128x512]", "a": (2048, 128), "b": (128, 512), "ta": False},
    ]


def time_op(fn, warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def measure(tokens: int = 8192, reps: int = 10, warmup: int = 2, threads: int | None = None) -> dict[str, Any]:
    if threads:
        torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for spec in shapes(tokens):
        a = torch.randn(*spec["a"], generator=gen)
        b = torch.randn(*spec["b"], generator=gen)
        if spec["ta"]:
            m, k, n = a.shape[1], a.shape[0], b.shape[1]
            out = torch.empty(m, n)

            def fn(a=a, b=b, out=out):
                torch.mm(a.T, b, out=out)
        else:
            m, k, n = a.shape[0], a.shape[1], b.shape[1]
            out = torch.empty(m, n)

            def fn(a=a, b=b, out=out):
                torch.mm(a, b, out=out)

        flops = 2 * m * k * n
        times = time_op(fn, warmup, reps)
        rows.append(_row(spec["name"], flops, times, torch.get_num_threads()))

    # SparseGPT's in-block column update: one rank-1 update of the remaining block columns, one thread.
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        block = torch.randn(2048, 128, generator=gen)
        u = torch.randn(128, generator=gen)
        err = torch.randn(2048, generator=gen)

        def column_updates():
            for i in range(128):
                block[:, i:].addr_(err, u[i:], alpha=-1.0)

        flops = 2 * 2048 * sum(128 - i for i in range(128))
        rows.append(
            _row("sparsegpt column updates addr_ [2048x128] (1 thread)", flops, time_op(column_updates, 1, reps), 1)
        )
    finally:
        torch.set_num_threads(threads_before)

    matmul_rows = [r for r in rows if "1 thread" not in r["name"]]
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "tokens": tokens,
        "reps": reps,
        "shapes": rows,
        "matmul_gflops": statistics.median(r["best_gflops"] for r in matmul_rows),
        "matmul_gflops_median_runs": statistics.median(r["median_gflops"] for r in matmul_rows),
    }


def _row(name: str, flops: float, times: list[float], threads: int) -> dict[str, Any]:
    best, med = min(times), statistics.median(times)
    return {
        "name": name,
        "gflop": flops / 1e9,
        "threads": threads,
        "best_s": best,
        "median_s": med,
        "best_gflops": flops / best / 1e9,
        "median_gflops": flops / med / 1e9,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Dense float32 matmul rate of this machine")
    parser.add_argument("--tokens", type=int, default=8192, help="rows of the activation matrices")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's default)")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    result = measure(args.tokens, args.reps, args.warmup, args.threads)
    for row in result["shapes"]:
        print(
            f"{row['name']:<56} {row['threads']} thr  best {row['best_gflops']:8.1f}  "
            f"median {row['median_gflops']:8.1f} GFLOP/s"
        )
    print(f"matmul rate (median over shapes of the best run): {result['matmul_gflops']:.1f} GFLOP/s")
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
