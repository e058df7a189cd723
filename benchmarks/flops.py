"""Analytic FLOP count of lp_prune's pruning step (`timings_s.prune`) for a Llama/Gemma-style decoder.

`pruning_flops(model_config, nsamples, seqlen, method)` returns a breakdown dict. An efficiency
report divides `total` by the measured prune_s and compares that rate with `matmul_rate.py`.

What lp_prune's pruning step does per decoder layer (src/lp_prune/calibration/, pruning/):

1. statistics pass: the layer runs forward on all n x L calibration tokens while forward pre-hooks
   accumulate statistics of every Linear's input. Linears fed the same tensor share one
   accumulator: q/k/v read one input (d = hidden), gate/up another (d = hidden), o_proj reads the
   attention output (d = heads * head_dim) and down_proj the MLP activation (d = intermediate).
   Where a Gram matrix X^T X is kept (SparseGPT; every method with `prune.local_error exact`), one
   product per distinct input, computed window by window into a float64 sum, is counted as
   2 * T * d_in^2 (the full square; lp_prune computes only the upper blocks of wide inputs, ~62%
   of it at d = 2048). Wanda otherwise keeps squared norms (2 * T * d_in, not counted).
2. solve: each group of Linears sharing an input is pruned (SparseGPT: one stacked solve; Wanda).
3. metrics (`prune.local_error`): exact: trace(W G W^T) for the dense weight and for W - W' (two
   products (d_out x d_in) @ (d_in x d_in)): 4 * d_out * d_in^2. sample (Wanda's and magnitude's
   default): ||W x||^2 and ||(W - W') x||^2 on about S = `metric_tokens` sampled tokens:
   4 * d_out * d_in * S. off: none.
4. propagate pass: the pruned layer runs forward again; its outputs are the next layer's inputs.
   So there are two forward passes per layer; the statistics pass stops as soon as the last Linear
   (down_proj) has its input, so it skips down_proj's product. `prune.single_pass` runs one pass.
   Magnitude pruning with metrics off runs no statistics pass.

Forward pass per token: 2 * d_in * d_out per Linear, plus attention scores and values
4 * K * heads * head_dim, where K is the number of key positions counted per query:
- "full" (default): K = L. transformers' SDPA path passes an explicit boolean/additive mask for
  Gemma-3 and Llama (is_causal is False then), and PyTorch's CPU kernel computes every query-key
  pair of the square and masks afterwards; so the causal triangle and the sliding window do not
  save work. This is the assumption for the CPU runs here.
- "causal": K = (L + 1) / 2 on average (a kernel that skips the masked upper triangle).
- "window": like causal, but sliding-window layers (config.layer_types / sliding_window) see at most
  `sliding_window` keys (Gemma-3: 512): the work of an ideal kernel.
Norms, rotary embeddings, activations and residual adds (O(T * d) each) are left out; so are the
embedding lookup that captures layer 0's inputs (no matmul) and the lm_head (never run while pruning).

SparseGPT solve for W (r = d_out rows, c = d_in columns, block size B), counting a multiply and an
add as two FLOPs (Golub & Van Loan's convention: Cholesky of an n x n matrix ~ n^3 / 3):
- inverse-Hessian factor, once per group of Linears sharing an input: lp_prune's route is one
  Cholesky of the reversed H (c^3/3) and one triangular inverse (c^3/3): 2c^3/3. More tries when the
  damping had to be raised are not counted.
- column updates inside a block: column j of B (0-based) updates the B - j columns from j on with a
  rank-1 update (addr_: 2 * r * (B - j)); summed over the block r * B * (B + 1); over c / B blocks
  r * c * (B + 1).
- lazy batch update after block k (end = k * B): errors [r x B] @ U[B x (c - end)] = 2 r B (c - end);
  summed over k = 1..c/B: r * c * (c - B).
- together r * c * (c + 1) ~ r c^2 for the OBS updates, independent of B (B only moves work between
  the single-threaded rank-1 updates and the batched matmul, which matters for speed, not count).
- scoring the block (w^2 / d^2) and selecting the lowest entries: O(r c) plus a sort; not counted.
GPTQ solve: the same factor, in-block rank-1 updates and lazy batch updates as SparseGPT's (the
grid of a group, O(r g), is not counted); like SparseGPT it keeps the Gram and exact metrics.
Wanda solve: |W| * ||X_j|| is 2 r c FLOPs plus a per-row sort (comparisons, not FLOPs): negligible;
reported as `solve` = 2 r c.

    python benchmarks/flops.py [--model DIR] [--nsamples 128] [--seqlen 512] [--method sparsegpt]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

ATTENTION_MODES = ("full", "causal", "window")


def _get(config: Any, key: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def model_shapes(model_config: Any) -> dict[str, Any]:
    """The sizes the count needs, from an HF config object or its dict (config.json)."""
    hidden = int(_get(model_config, "hidden_size"))
    heads = int(_get(model_config, "num_attention_heads"))
    head_dim = _get(model_config, "head_dim") or hidden // heads
    kv_heads = int(_get(model_config, "num_key_value_heads") or heads)
    layers = int(_get(model_config, "num_hidden_layers"))
    layer_types = _get(model_config, "layer_types") or ["full_attention"] * layers
    return {
        "hidden": hidden,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": int(head_dim),
        "intermediate": int(_get(model_config, "intermediate_size")),
        "layers": layers,
        "layer_types": list(layer_types),
        "sliding_window": _get(model_config, "sliding_window"),
    }


def decoder_linears(shapes: dict[str, Any]) -> dict[str, tuple[int, int, str]]:
    """Per decoder layer: Linear name -> (d_out, d_in, name of its input tensor)."""
    hidden, attn, inter = shapes["hidden"], shapes["heads"] * shapes["head_dim"], shapes["intermediate"]
    kv = shapes["kv_heads"] * shapes["head_dim"]
    return {
        "q_proj": (attn, hidden, "attn_in"),
        "k_proj": (kv, hidden, "attn_in"),
        "v_proj": (kv, hidden, "attn_in"),
        "o_proj": (hidden, attn, "attn_out"),
        "gate_proj": (inter, hidden, "mlp_in"),
        "up_proj": (inter, hidden, "mlp_in"),
        "down_proj": (hidden, inter, "mlp_act"),
    }


def _keys_per_query(seqlen: int, attention: str, window: int | None, sliding: bool) -> float:
    """Average number of key positions a query is scored against (see the module docstring)."""
    if attention == "full":
        return float(seqlen)
    if attention == "causal" or not sliding or not window or window >= seqlen:
        return (seqlen + 1) / 2
    # causal with a window w < L: position p (0-based) sees min(p + 1, w) keys.
    w = int(window)
    return (w * (w + 1) / 2 + (seqlen - w) * w) / seqlen


def sparsegpt_solve_flops(d_out: int, d_in: int, blocksize: int = 128) -> dict[str, float]:
    """FLOPs of lp_prune's stacked SparseGPT solve on [d_out x d_in] rows sharing one Hessian
    (derivation: module docstring)."""
    r, c, b = d_out, d_in, min(blocksize, d_in)
    factor = 2 * c**3 / 3
    in_block = r * c * (b + 1)
    lazy = r * c * (c - b)
    return {"factor": factor, "block_updates": in_block, "lazy_updates": lazy, "total": factor + in_block + lazy}


def pruning_flops(
    model_config: Any,
    nsamples: int,
    seqlen: int,
    method: str = "sparsegpt",
    blocksize: int = 128,
    attention: str = "full",
    forward_passes: int = 2,
    metrics: str = "auto",
    metric_tokens: int = 2048,
) -> dict[str, Any]:
    """FLOPs of lp_prune's pruning step (all decoder layers) by phase; `total` is their sum.

    forward_passes: forward runs of each layer over all tokens (2: statistics + propagate; 1: single
    pass). A statistics pass stops once the last Linear has its input, so it skips down_proj.
    metrics: `prune.local_error` (auto, exact, sample, off; auto = exact for SparseGPT, else sample).
    """
    if method not in ("sparsegpt", "wanda", "magnitude", "gptq"):
        raise ValueError(f"unknown method '{method}'")
    if attention not in ATTENTION_MODES:
        raise ValueError(f"attention must be one of {ATTENTION_MODES}, got '{attention}'")
    if metrics == "auto":
        metrics = "exact" if method in ("sparsegpt", "gptq") else "sample"
    shapes = model_shapes(model_config)
    linears = decoder_linears(shapes)
    tokens = nsamples * seqlen
    heads, head_dim = shapes["heads"], shapes["head_dim"]

    linear_fwd = sum(2 * tokens * d_out * d_in for d_out, d_in, _ in linears.values())
    attention_fwd = 0.0
    for layer_type in shapes["layer_types"]:
        keys = _keys_per_query(seqlen, attention, shapes["sliding_window"], layer_type == "sliding_attention")
        attention_fwd += 4 * tokens * keys * heads * head_dim
    n_layers = shapes["layers"]

    groups: dict[str, list[tuple[int, int]]] = {}  # distinct Linear inputs: one Gram and one solve each
    for d_out, d_in, source in linears.values():
        groups.setdefault(source, []).append((d_out, d_in))
    needs_gram = method in ("sparsegpt", "gptq") or metrics == "exact"
    gram_per_layer = sum(2 * tokens * members[0][1] ** 2 for members in groups.values()) if needs_gram else 0

    solve_per_group: dict[str, float] = {}
    for source, members in groups.items():
        rows, d_in = sum(d_out for d_out, _ in members), members[0][1]
        if method in ("sparsegpt", "gptq"):  # the same factor, column loop and lazy updates
            solve_per_group[source] = sparsegpt_solve_flops(rows, d_in, blocksize)["total"]
        else:
            solve_per_group[source] = 2 * rows * d_in
    sampled = min(metric_tokens, tokens)
    per_linear_metric = {"exact": lambda o, i: 4 * o * i * i, "sample": lambda o, i: 4 * o * i * sampled}
    metric = per_linear_metric.get(metrics, lambda o, i: 0)
    metrics_per_layer = sum(metric(d_out, d_in) for d_out, d_in, _ in linears.values())

    passes = forward_passes if (method != "magnitude" or metrics != "off") else 1
    down_out, down_in, _ = linears["down_proj"]
    skipped = (passes - 1) * n_layers * 2 * tokens * down_out * down_in  # statistics passes stop before it
    breakdown = {
        "forward_linear": passes * n_layers * linear_fwd - skipped,
        "forward_attention": passes * attention_fwd,
        "gram": n_layers * gram_per_layer,
        "solve": n_layers * sum(solve_per_group.values()),
        "metrics": n_layers * metrics_per_layer,
    }
    total = sum(breakdown.values())
    return {
        "method": method,
        "nsamples": nsamples,
        "seqlen": seqlen,
        "tokens": tokens,
        "layers": n_layers,
        "attention": attention,
        "forward_passes": passes,
        "metrics_mode": metrics,
        "blocksize": blocksize,
        "flops": breakdown,
        "total": total,
        "shares": {k: v / total for k, v in breakdown.items()} if total else {},
        "solve_per_group": solve_per_group,
        "linears": {name: [d_out, d_in] for name, (d_out, d_in, _) in linears.items()},
    }


def _body_flops(shapes: dict[str, Any], tokens: int, key_pairs_per_layer: list[float]) -> dict[str, float]:
    """Decoder Linears on `tokens` positions, and attention over the given (query, key) pairs per layer."""
    linear = sum(2 * tokens * d_out * d_in for d_out, d_in, _ in decoder_linears(shapes).values())
    attention = sum(4 * pairs * shapes["heads"] * shapes["head_dim"] for pairs in key_pairs_per_layer)
    return {"body_linear": shapes["layers"] * linear, "body_attention": attention}


def evaluation_flops(model_config: Any, windows: int, seqlen: int, attention: str = "full") -> dict[str, Any]:
    """FLOPs of one perplexity evaluation over `windows` x `seqlen` tokens: the decoder body on every
    position, the LM head (2 d V per position) on the seqlen - 1 positions of a window that predict
    a token. The fused cross-entropy's exponentials and sums (O(V) per position) are not counted."""
    shapes = model_shapes(model_config)
    tokens = windows * seqlen
    pairs = [
        tokens * _keys_per_query(seqlen, attention, shapes["sliding_window"], kind == "sliding_attention")
        for kind in shapes["layer_types"]
    ]
    breakdown = _body_flops(shapes, tokens, pairs)
    breakdown["head"] = 2 * windows * (seqlen - 1) * shapes["hidden"] * int(_get(model_config, "vocab_size"))
    return {"windows": windows, "seqlen": seqlen, "flops": breakdown, "total": sum(breakdown.values())}


def scoring_flops(model_config: Any, items: list[tuple[int, list[int]]]) -> dict[str, Any]:
    """The least work of scoring multiple-choice items, each (context length, [continuation lengths]):
    the context once per item, every continuation token but the last through the body (the last is
    predicted, never input), attention over the keys each token sees (the context causally, its own
    continuation), and the LM head at every predicted token only."""
    shapes = model_shapes(model_config)
    body_tokens = head_positions = 0
    pairs = 0.0
    for context, continuations in items:
        body_tokens += context + sum(n - 1 for n in continuations)
        head_positions += sum(continuations)
        pairs += context * (context + 1) / 2 + sum(sum(context + j + 1 for j in range(n - 1)) for n in continuations)
    breakdown = _body_flops(shapes, body_tokens, [pairs] * shapes["layers"])
    breakdown["head"] = 2 * head_positions * shapes["hidden"] * int(_get(model_config, "vocab_size"))
    return {
        "items": len(items),
        "requests": sum(len(c) for _, c in items),
        "body_tokens": body_tokens,
        "head_positions": head_positions,
        "flops": breakdown,
        "total": sum(breakdown.values()),
    }


def efficiency(flops: dict[str, Any], prune_s: float, matmul_gflops: float) -> dict[str, float]:
    """Achieved FLOP rate of a measured pruning step and its share of the machine's matmul rate."""
    rate = flops["total"] / prune_s / 1e9
    return {"gflops_per_s": rate, "matmul_gflops_per_s": matmul_gflops, "fraction_of_matmul": rate / matmul_gflops}


def _load_config(model: str | None) -> dict[str, Any]:
    from pathlib import Path

    if model is None:
        from lp_prune.models.loading import packaged_model_dir

        model = str(packaged_model_dir())
    return json.loads((Path(model) / "config.json").read_text())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="HF model folder (default: the packaged Gemma-3-270M)")
    parser.add_argument("--nsamples", type=int, default=128)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--method", default="sparsegpt", choices=["sparsegpt", "wanda", "magnitude", "gptq"])
    parser.add_argument("--blocksize", type=int, default=128)
    parser.add_argument("--attention", default="full", choices=ATTENTION_MODES)
    parser.add_argument("--prune-s", type=float, help="measured prune_s: also print the achieved rate")
    parser.add_argument("--matmul-gflops", type=float, help="matmul rate (matmul_rate.py) for --prune-s")
    args = parser.parse_args(argv)
    result = pruning_flops(
        _load_config(args.model), args.nsamples, args.seqlen, args.method, args.blocksize, args.attention
    )
    if args.prune_s and args.matmul_gflops:
        result["efficiency"] = efficiency(result, args.prune_s, args.matmul_gflops)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
