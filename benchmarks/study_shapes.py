"""The study's model sizes on this machine: decoder layers with Llama-3-8B's / 70B's real shapes, pruned.

A model is built from a saved config.json of `configs/models/shapes/` with its layer count cut
(random weights, bfloat16, the real vocabulary, hidden size, intermediate size and GQA heads), saved
once under `benchmarks/results/shapes/`, and pruned by a real `lp-prune run` on random calibration
token ids (no perplexity, no W&B). The run's peak RSS (os.wait4 through `_measure.py`) and wall time
are set beside `lp-prune estimate` for the same config, which must be at least the measured peak and
at most 1.25 times it.

    python benchmarks/study_shapes.py --shape configs/models/shapes/llama3-70b.json --layers 1
    python benchmarks/study_shapes.py --shape configs/models/shapes/llama3-8b.json --layers 2

Options: --method sparsegpt|wanda, --nsamples 8, --seqlen 512, --dtype bfloat16, --out DIR.
Disk: the 70B-shaped model with one layer is about 6 GB (embeddings and LM head are 2 GB each).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import BENCH_DIR, child_env, import_lp_prune, run_measured

RESULTS = BENCH_DIR / "results" / "shapes"


def build_model(shape_file: Path, layers: int, dtype: str) -> Path:
    """A random-weight model of the shape with `layers` decoder layers, saved once (with a tokenizer)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from lp_prune.models.loading import DTYPES, packaged_model_dir

    folder = RESULTS / f"{shape_file.stem}-{layers}layer-{dtype}"
    if (folder / "config.json").exists():
        return folder
    config = AutoConfig.for_model(**{**json.loads(shape_file.read_text()), "num_hidden_layers": layers})
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype])
    model.save_pretrained(folder)
    del model
    # Any tokenizer serves: the calibration windows come from a token file; this one must only load.
    AutoTokenizer.from_pretrained(packaged_model_dir()).save_pretrained(folder)
    return folder


def token_file(folder: Path, vocab: int, nsamples: int, seqlen: int) -> Path:
    import torch

    path = folder.parent / f"tokens-{vocab}-{nsamples}x{seqlen}.pt"
    if not path.exists():
        ids = torch.randint(3, vocab, (nsamples, seqlen), generator=torch.Generator().manual_seed(0))
        torch.save(ids, path)
    return path


def run_args(model: Path, tokens: Path, args: argparse.Namespace, out: Path) -> list[str]:
    return [
        "run",
        "--model.name", str(model), "--model.dtype", args.dtype,
        "--prune.method", args.method,
        "--data.source", "tokens", "--data.token_file", str(tokens),
        "--data.nsamples", str(args.nsamples), "--data.seqlen", str(args.seqlen),
        "--data.eval_windows", "0", "--eval.perplexity", "false",
        "--checkpoint", "false", "--wandb.mode", "disabled", "--accelerator", "cpu",
        "--out", str(out), "--overwrite", "true",
    ]  # fmt: skip


def estimate_bytes(run: list[str]) -> tuple[int, str]:
    """The estimate `lp-prune run` prints before loading weights, for exactly these arguments."""
    from transformers import AutoConfig

    from lp_prune.cli import build_parser
    from lp_prune.config import run_config_from
    from lp_prune.memory import ModelShape, estimate_memory

    parser = build_parser()
    config = run_config_from(parser.instantiate_classes(parser.parse_args(run))["run"])
    estimate = estimate_memory(config, ModelShape.from_config(AutoConfig.from_pretrained(config.model.name)), "cpu")
    return estimate.peak, estimate.table()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=Path, required=True, help="a config.json, e.g. configs/models/shapes/...")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--method", default="sparsegpt", choices=["sparsegpt", "wanda"])
    parser.add_argument("--nsamples", type=int, default=8)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    root = import_lp_prune()
    from lp_prune.config.hub import resolve  # configs/models/shapes/... is the packaged copy

    args.shape = Path(resolve(str(args.shape)))
    model = build_model(args.shape, args.layers, args.dtype)
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    tokens = token_file(model, vocab, args.nsamples, args.seqlen)
    name = f"{args.shape.stem}-{args.layers}layer-{args.method}-{args.nsamples}x{args.seqlen}"
    run = run_args(model, tokens, args, args.out / "runs" / name)
    estimate, table = estimate_bytes(run)
    measured = run_measured([sys.executable, "-m", "lp_prune", *run], args.out / f"{name}.log", child_env(root))
    summary = json.loads((args.out / "runs" / name / "summary.json").read_text()) if measured.rc == 0 else {}
    result = {
        "name": name,
        "rc": measured.rc,
        "wall_s": measured.wall_s,
        "peak_rss_mb": measured.peak_rss_mb,
        "estimate_mb": estimate / 2**20,
        "estimate_over_peak": estimate / 2**20 / measured.peak_rss_mb,
        "timings_s": summary.get("timings_s", {}),
        "sparsity": summary.get("sparsity"),
        "estimate_table": table,
        "log": measured.log,
    }
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(table)
    print(json.dumps({k: v for k, v in result.items() if k != "estimate_table"}, indent=2))
    return measured.rc


if __name__ == "__main__":
    sys.exit(main())
