"""Do results depend on how the work is split? Masks of the same run done three ways, and its cost.

On the packaged Gemma-3-270M (float32, the same calibration token file for every run, perplexity
off), `lp-prune run` is run
- as the reference: one process, data.batch_size 8;
- with data.batch_size 1 (the statistics summed in another order);
- with 2 data-parallel processes (gloo; each solves its share of the Linear groups).
and the masks of each variant are compared with the reference's: IoU pooled over all Linears, and
the lowest per Linear. Beside them the pruning phases of each run (summary.json timings_s).

    python benchmarks/work_split.py --method sparsegpt --nsamples 32 --seqlen 256
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from _common import (
    child_env,
    fmt,
    import_lp_prune,
    lp_prune_command,
    machine_info,
    make_token_file,
    mask_agreement,
    progress,
    results_dir,
    run_measured,
    write_report,
)

VARIANTS = {
    "reference (1 process, batch 8)": [],
    "batch size 1": ["--data.batch_size", "1"],
    "2 processes (ddp)": ["--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="sparsegpt", choices=["sparsegpt", "wanda"])
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--out", help="results folder (default: benchmarks/results/<timestamp>-split)")
    args = parser.parse_args(argv)

    root = import_lp_prune()
    out = results_dir(args.out)
    tokens = make_token_file(out / "tokens.pt", args.nsamples, args.seqlen)
    runs: dict[str, dict[str, Any]] = {}
    for name, flags in VARIANTS.items():
        folder = out / name.split(" (")[0].replace(" ", "-")
        progress(f"{name}: {folder}")
        cmd = lp_prune_command(args.method, tokens, args.nsamples, args.seqlen, folder, save_model=False)
        measured = run_measured([*cmd, *flags], folder.with_suffix(".log"), child_env(root))
        if measured.rc != 0:
            print(f"{name} failed (rc {measured.rc}); see {measured.log}", file=sys.stderr)
            return measured.rc
        timings = json.loads((folder / "summary.json").read_text())["timings_s"]
        runs[name] = {"folder": str(folder), "wall_s": measured.wall_s, "peak_rss_mb": measured.peak_rss_mb,
                      "timings_s": {k: v for k, v in timings.items() if k.startswith("prune")}}  # fmt: skip
    reference = Path(runs[next(iter(VARIANTS))]["folder"])
    lines = ["| variant | mask IoU vs reference | lowest per Linear | prune_s | solve_s | statistics_s |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, run in runs.items():
        run.update(mask_agreement(reference, Path(run["folder"])))
        t = run["timings_s"]
        lines.append(f"| {name} | {run['iou']:.5f} | {run['min_module_iou']:.5f} | {fmt(t.get('prune'))} | "
                     f"{fmt(t.get('prune_solve'))} | {fmt(t.get('prune_statistics'))} |")  # fmt: skip
    report = {"method": args.method, "nsamples": args.nsamples, "seqlen": args.seqlen, "machine": machine_info(),
              "runs": runs}  # fmt: skip
    write_report(out, report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
