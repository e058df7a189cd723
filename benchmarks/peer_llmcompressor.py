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
- Pruning modifiers at their defaults except sparsity and mask_structure "0:0" (unstructured): SparseGPT
  block_size=128, dampening_frac=0.01 (modifiers/pruning/sparsegpt/base.py), Hessian accumulated in
  float32 as a running mean of 2/n X^T X (sgpt_sparsify.py); Wanda scores |W| * sqrt(mean ||x_j||^2),
  lowest fraction per output row by a stable sort (pruning/wanda/wanda_sparsify.py).
- Targets: the decoder layers (regex on their module names); the modifier prunes the Linears inside
  them (sgpt_base.py, PRUNABLE_LAYER_TYPES), so lm_head and the embeddings are untouched.
- GPTQ (`--method gptq`): GPTQModifier with one config group of int weights (--bits, --group-size,
  --symmetric; strategy "group", or "channel" without a group size), targets Linear, ignore lm_head,
  actorder None (its default "static" reorders columns; lp_prune's act_order is off by default),
  block_size 128, dampening_frac 0.01 (modifiers/gptq/base.py). The grid differs from lp_prune's:
  the weight observer fixes every group's (scale, zero point) from the original weights before the
  solve (compress_module_list -> weight_observer.get_qparams), where lp_prune (as IST-DASLab/gptq)
  takes it from the group's updated weights when its first column comes. After oneshot each
  Linear's weight holds the dequantized values (helpers.update_batch_qparams).
- The model is loaded here in float32 on CPU and saved with `save_pretrained(..., save_compressed=
  False)`: dense safetensors whose pruned weights are exact zeros. A GPTQ model is saved as a plain
  dense folder instead (its dequantized weights, no quantization parameters or quantization_config),
  so that any evaluator reads the same numbers the peer computed.

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
    parser.add_argument("--method", required=True, choices=["sparsegpt", "wanda", "gptq"])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--bits", type=int, default=4, help="gptq: bits per weight")
    parser.add_argument("--group-size", type=int, default=128, help="gptq: columns per grid (0: one per row)")
    parser.add_argument("--symmetric", action="store_true", help="gptq: a grid symmetric around 0")
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


def make_modifier(args: argparse.Namespace, targets: list[str]):
    method, sparsity = args.method, args.sparsity
    if method == "gptq":
        return gptq_modifier(args.bits, args.group_size, args.symmetric)
    if method == "sparsegpt":
        from llmcompressor.modifiers.pruning import SparseGPTModifier

        return SparseGPTModifier(sparsity=sparsity, mask_structure="0:0", targets=targets)
    from llmcompressor.modifiers.pruning import WandaPruningModifier

    return WandaPruningModifier(sparsity=sparsity, mask_structure="0:0", targets=targets)


def gptq_modifier(bits: int, group_size: int, symmetric: bool):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from llmcompressor.modifiers.gptq import GPTQModifier

    weights = QuantizationArgs(
        num_bits=bits,
        type="int",
        strategy="group" if group_size else "channel",
        group_size=group_size or None,
        symmetric=symmetric,
        dynamic=False,
    )
    scheme = QuantizationScheme(targets=["Linear"], weights=weights)
    return GPTQModifier(
        config_groups={"group_0": scheme}, ignore=["lm_head"], actorder=None, block_size=128, dampening_frac=0.01
    )


def save_dequantized(model, folder: Path) -> None:
    """The dequantized weights as a plain dense HF folder: quantization parameters and config dropped."""
    from safetensors.torch import save_file

    quant_keys = ("weight_scale", "weight_zero_point", "weight_g_idx", "weight_global_scale")
    state = {
        name: tensor.detach().contiguous().clone()
        for name, tensor in model.state_dict().items()
        if not name.endswith(quant_keys)
    }
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


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
    modifier = make_modifier(args, targets)

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
        if args.method == "gptq":
            save_dequantized(model, out / "model")
        else:
            model.save_pretrained(out / "model", save_compressed=False)
        tokenizer.save_pretrained(out / "model")
        save_s = time.perf_counter() - start

    result = {
        "tool": "llmcompressor",
        "method": args.method,
        "sparsity": args.sparsity,
        "bits": args.bits if args.method == "gptq" else None,
        "group_size": args.group_size if args.method == "gptq" else None,
        "symmetric": args.symmetric if args.method == "gptq" else None,
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
