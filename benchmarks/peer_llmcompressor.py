"""Prune a model with llm-compressor (the peer tool) on given calibration token ids.

Runs inside the peer venv made by setup_peer.sh (llmcompressor 0.14.x); does not import lp_prune.

    benchmarks/.venv-llmc/bin/python benchmarks/peer_llmcompressor.py --model DIR --tokens ids.pt \
        --method sparsegpt --sparsity 0.5 --out OUT

How llm-compressor is driven (facts from its 0.14 source, paths under site-packages/llmcompressor):
- `oneshot(model=<loaded model>, dataset=<datasets.Dataset>, recipe=<modifier>, ...)`
  (entrypoints/oneshot.py). A Dataset that already has an `input_ids` column is used as it is, with
  no tokenisation (datasets/utils.py, get_processed_dataset).
- Samples: `num_calibration_samples=n` (default 512) and `shuffle_calibration_samples=False`
  (default True = RandomSampler over a permutation; False = LengthAwareSampler, which for equal
  lengths yields all rows): either way all n rows are used once; False keeps it deterministic.
  `max_seq_length=seqlen` caps the truncation collator (rows are seqlen long already).
  `batch_size` (default 1) is llm-compressor's own default; --batch-size changes it.
- Pipeline: "sequential" (the default "independent" infers "sequential" for any modifier that needs
  calibration data, pipelines/registry.py): the model is traced with torch.fx into one subgraph per
  decoder layer (sequential_targets default: the model's _no_split_modules, Gemma3DecoderLayer);
  each subgraph runs once with the modifier's hooks (statistics), is pruned
  (on_sequential_epoch_end -> compress_modules), and runs again to propagate the pruned outputs
  (propagate_error=True), as in pipelines/sequential/pipeline.py. Calibration forwards force eager
  attention (utils/helpers.py, calibration_forward_context).
- Modifiers at their defaults except sparsity and mask_structure "0:0" (unstructured): SparseGPT
  block_size=128, dampening_frac=0.01 (modifiers/pruning/sparsegpt/base.py), Hessian accumulated in
  float32 as a running mean of 2/n X^T X (sgpt_sparsify.py); Wanda scores |W| * sqrt(mean ||x_j||^2),
  lowest fraction per output row by a stable sort (pruning/wanda/wanda_sparsify.py).
- Targets: the decoder layers (regex on their module names); the modifier prunes the Linears inside
  them (sgpt_base.py, PRUNABLE_LAYER_TYPES), so lm_head and the embeddings are untouched.
- The model is loaded here in float32 on CPU and saved with `save_pretrained(..., save_compressed=
  False)`: dense safetensors whose pruned weights are exact zeros.

Writes OUT/model (the pruned model and tokenizer) and OUT/result.json.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402  (the clock starts before the heavy imports)
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Prune with llm-compressor on given token ids")
    parser.add_argument("--model", required=True, help="HF model folder")
    parser.add_argument("--tokens", required=True, help="[n, seqlen] int64 tensor saved with torch.save")
    parser.add_argument("--method", required=True, choices=["sparsegpt", "wanda"])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--out", required=True, help="output folder: model/ and result.json")
    parser.add_argument("--batch-size", type=int, default=1, help="oneshot batch_size (llm-compressor's default: 1)")
    parser.add_argument("--no-save", action="store_true", help="do not save the pruned model")
    return parser.parse_args(argv)


def decoder_layer_targets(model) -> list[str]:
    """A regex that matches exactly the decoder layers' module names (e.g. 'model.layers.3')."""
    import torch

    prefixes = [
        name
        for name, module in model.named_modules()
        if name.endswith("layers") and isinstance(module, torch.nn.ModuleList)
    ]
    if not prefixes:
        raise SystemExit("error: found no decoder layer list ('...layers' ModuleList) in the model")
    return [f"re:{re.escape(prefix)}\\.\\d+$" for prefix in prefixes]


def make_modifier(method: str, sparsity: float, targets: list[str]):
    if method == "sparsegpt":
        from llmcompressor.modifiers.pruning import SparseGPTModifier

        return SparseGPTModifier(sparsity=sparsity, mask_structure="0:0", targets=targets)
    from llmcompressor.modifiers.pruning import WandaPruningModifier

    return WandaPruningModifier(sparsity=sparsity, mask_structure="0:0", targets=targets)


def decoder_sparsity(model) -> dict[str, float]:
    """Exact zeros in the decoder Linears (pooled) and in lm_head/embeddings (should be unchanged)."""
    import torch

    zeros = total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}":
            zeros += int((module.weight == 0).sum())
            total += module.weight.numel()
    return {"decoder_linear_zeros": zeros / max(total, 1), "decoder_linear_numel": total}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import datasets
    import llmcompressor
    import torch
    import transformers
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = torch.load(args.tokens, weights_only=True)
    if not isinstance(ids, torch.Tensor) or ids.ndim != 2:
        raise SystemExit(f"error: {args.tokens} must hold a [n, seqlen] tensor of token ids")
    ids = ids.long()
    nsamples, seqlen = ids.shape
    dataset = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    dense_zeros = decoder_sparsity(model)["decoder_linear_zeros"]
    targets = decoder_layer_targets(model)
    modifier = make_modifier(args.method, args.sparsity, targets)

    # Count the calibration rows the model really sees: the embedding runs on every batch.
    seen: set[tuple[int, ...]] = set()
    rows_forwarded = 0

    def count_rows(_module, inputs):
        nonlocal rows_forwarded
        x = inputs[0] if inputs else None
        if isinstance(x, torch.Tensor) and x.dtype == torch.long and x.dim() == 2:
            rows_forwarded += x.shape[0]
            seen.update(tuple(row) for row in x.tolist())

    embed = model.get_input_embeddings()
    handle = embed.register_forward_pre_hook(count_rows)

    threads = torch.get_num_threads()
    start = time.perf_counter()
    oneshot(
        model=model,
        processor=tokenizer,
        dataset=dataset,
        recipe=modifier,
        num_calibration_samples=nsamples,
        shuffle_calibration_samples=False,
        max_seq_length=seqlen,
        batch_size=args.batch_size,
        pipeline="sequential",
    )
    prune_s = time.perf_counter() - start
    handle.remove()

    expected = {tuple(row) for row in ids.tolist()}
    stats = decoder_sparsity(model)
    save_s = None
    if not args.no_save:
        start = time.perf_counter()
        model.save_pretrained(out / "model", save_compressed=False)
        tokenizer.save_pretrained(out / "model")
        save_s = time.perf_counter() - start

    result = {
        "tool": "llmcompressor",
        "method": args.method,
        "sparsity": args.sparsity,
        "nsamples": nsamples,
        "seqlen": seqlen,
        "batch_size": args.batch_size,
        "pipeline": "sequential",
        "targets": targets,
        "modifier": modifier.model_dump(mode="json", exclude_none=False)
        if hasattr(modifier, "model_dump")
        else str(modifier),
        "prune_s": prune_s,
        "save_s": save_s,
        "process_s": time.perf_counter() - PROCESS_START,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": threads,
        "rows_forwarded": rows_forwarded,
        "distinct_rows_seen": len(seen),
        "all_rows_used": expected <= seen,
        "dense_decoder_zeros": dense_zeros,
        **stats,
        "versions": {
            "python": sys.version.split()[0],
            "llmcompressor": llmcompressor.__version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "datasets": datasets.__version__,
        },
        "pid": os.getpid(),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: result[k] for k in ("prune_s", "process_s", "peak_rss_mb", "all_rows_used")}))
    print(f"decoder Linear zeros: {stats['decoder_linear_zeros']:.4f} (dense {dense_zeros:.4f})")
    if not result["all_rows_used"]:
        print("warning: not every calibration row reached the model", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
