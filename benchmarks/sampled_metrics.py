"""Wanda's per-Linear metrics from a token sample (its default) against the exact ones from the Gram.

Two `lp-prune run`s of Wanda on the packaged Gemma-3-270M with the same calibration token file, one
with `--prune.local_error exact`, one with the default sample of `prune.metric_tokens` tokens. The
metrics do not steer pruning, but Wanda's norms come from the Gram's diagonal in the one and from
direct sums in the other, so near-ties may flip: the script counts the positions that differ. Per
projection it reports the largest and mean |SNR difference| in dB over the layers, and each run's
pruning time.

    python benchmarks/sampled_metrics.py --nsamples 64 --seqlen 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict

from _common import (
    child_env,
    import_lp_prune,
    lp_prune_command,
    machine_info,
    make_token_file,
    progress,
    results_dir,
    run_measured,
    write_report,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nsamples", type=int, default=64)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--out", help="results folder (default: benchmarks/results/<timestamp>)")
    args = parser.parse_args(argv)

    root = import_lp_prune()
    out = results_dir(args.out)
    tokens = make_token_file(out / "tokens.pt", args.nsamples, args.seqlen)
    summaries, prune_s = {}, {}
    for mode in ("exact", "sample"):
        progress(f"wanda, local_error {mode}")
        folder = out / mode
        cmd = lp_prune_command("wanda", tokens, args.nsamples, args.seqlen, folder, save_model=False)
        child = run_measured([*cmd, "--prune.local_error", mode], folder.with_suffix(".log"), child_env(root))
        if child.rc != 0:
            raise SystemExit(f"{mode} run failed: see {child.log}")
        summaries[mode] = json.loads((folder / "summary.json").read_text())
        prune_s[mode] = summaries[mode]["timings_s"]["prune"]

    import lp_prune

    exact_masks, sample_masks = lp_prune.load_masks(out / "exact"), lp_prune.load_masks(out / "sample")
    differing = sum(int((exact_masks[n] != sample_masks[n]).sum()) for n in exact_masks)
    total = sum(mask.numel() for mask in exact_masks.values())
    gaps: dict[str, list[float]] = defaultdict(list)
    for a, b in zip(summaries["exact"]["modules"], summaries["sample"]["modules"], strict=True):
        gaps[a["module"].rsplit(".", 1)[-1]].append(abs(a["snr_db"] - b["snr_db"]))
    lines = ["| projection | largest abs SNR difference (dB) | mean (dB) |", "|---|---|---|"]
    lines += [f"| {proj} | {max(v):.3f} | {statistics.fmean(v):.3f} |" for proj, v in gaps.items()]
    timing = f"prune_s exact {prune_s['exact']:.1f}, sample {prune_s['sample']:.1f}"
    lines.append(f"\nmask positions that differ: {differing} of {total}; {timing}")
    report = {"machine": machine_info(), "gaps_db": gaps, "prune_s": prune_s, "differing_positions": differing}
    write_report(out, report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
