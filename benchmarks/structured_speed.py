"""The physically smaller model of a structured run against the dense one: parameters, saved size and
forward time, on the embedded default (Gemma-3-270M) unless --model names another.

For each ratio, every layer loses that share of its FFN channels and of its query heads (the same
count per key/value group), chosen by the summed |W| of their down_proj / o_proj columns: the speed
does not depend on which ones go (a run's wanda_sp choice uses calibration norms as well). The cut
model comes from lp_prune's own `shrink`, so the figures are those of a saved wanda_sp model.
Times are medians of alternating repeats, as ratios to the dense model measured in the same run,
with the machine's matmul rate beside them.

    python benchmarks/structured_speed.py --ratios 0.2 0.3 --tokens 256 --batch 1 8
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _common import import_lp_prune

import_lp_prune()

import matmul_rate  # noqa: E402

from lp_prune.config import ModelConfig  # noqa: E402
from lp_prune.models.layers import decoder_layers, layer_prefix  # noqa: E402
from lp_prune.models.loading import load_model  # noqa: E402
from lp_prune.models.shrink import kept_structures, shrink  # noqa: E402
from lp_prune.pruning.wanda_sp import channels_to_remove, heads_to_remove  # noqa: E402


def structural_masks(model: torch.nn.Module, ratio: float) -> dict[str, torch.Tensor]:
    """down_proj / o_proj column masks removing `ratio` of each layer's channels and heads."""
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    masks = {}
    for index, layer in enumerate(decoder_layers(model)):
        prefix = layer_prefix(model, index)
        down, o_proj = layer.mlp.down_proj.weight, layer.self_attn.o_proj.weight
        channels = channels_to_remove(down.abs().sum(0), ratio)
        heads = heads_to_remove(o_proj.abs().sum(0).reshape(-1, head_dim).sum(1), kv_heads, ratio)
        masks[f"{prefix}.mlp.down_proj"] = channels.expand_as(down)
        masks[f"{prefix}.self_attn.o_proj"] = heads.repeat_interleave(head_dim).expand_as(o_proj)
    return masks


def forward_seconds(model: torch.nn.Module, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        model(ids, use_cache=False)
    return time.perf_counter() - start


def saved_bytes(model: torch.nn.Module) -> int:
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.3])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    dense = load_model(ModelConfig(name=args.model, dtype="float32")).eval()
    models = {"dense": dense}
    for ratio in args.ratios:
        cut = copy.deepcopy(dense)
        shrink(cut, kept_structures(cut, structural_masks(cut, ratio)))
        models[f"cut {ratio:g}"] = cut
    rate = matmul_rate.measure(tokens=2048, reps=5)["matmul_gflops"]
    rows = []
    for batch in args.batch:
        ids = torch.randint(
            10, dense.config.vocab_size - 10, (batch, args.tokens), generator=torch.Generator().manual_seed(0)
        )
        times: dict[str, list[float]] = {name: [] for name in models}
        for model in models.values():
            forward_seconds(model, ids)  # warm-up
        for _ in range(args.repeats):  # alternating, so drifts of the machine hit every model alike
            for name, model in models.items():
                times[name].append(forward_seconds(model, ids))
        base = statistics.median(times["dense"])
        for name, model in models.items():
            median = statistics.median(times[name])
            rows.append(
                {
                    "model": name,
                    "batch": batch,
                    "tokens": args.tokens,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "forward_s": median,
                    "time_vs_dense": median / base,
                    "intermediate_size": model.config.intermediate_size,
                    "heads": model.config.num_attention_heads,
                }
            )
    sizes = {name: saved_bytes(model) for name, model in models.items()}
    for row in rows:
        row["saved_mb"] = sizes[row["model"]] / 1e6
    print(json.dumps({"matmul_gflops": rate, "threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
