"""Checks that need the model's config, run before any weights load (the rest live in config.py)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import PretrainedConfig

from lp_prune.config import PruneConfig, RunConfig
from lp_prune.errors import ConfigError, DataError, NumericalError
from lp_prune.models.loading import check_weight_files, model_source
from lp_prune.tracking.wandb_logger import resolve_mode

GIB = 1024**3


def preflight(config: RunConfig, model_config: PretrainedConfig) -> None:
    check_method_fits(config.prune, model_config)
    check_weight_files(config.model)
    check_disk_space(config)
    resolve_mode(config.wandb)  # refuses a WANDB_MODE that wandb.init would reject after the run has begun


def check_method_fits(prune: PruneConfig, model_config: PretrainedConfig) -> None:
    """The pattern and the method's own checks, against the model's Linear sizes and attention shape."""
    check_n_m_fits(prune, model_config)
    sizes = tuple(sorted(linear_input_sizes(model_config)))
    known = replace(prune.context, input_sizes=sizes, heads=attention_heads(model_config))
    prune.method.check(known)  # what only it knows


def linear_input_sizes(model_config: PretrainedConfig) -> set[int]:
    """Input sizes of a decoder layer's Linears: hidden (q/k/v/gate/up), attention (o), FFN (down)."""
    hidden = model_config.hidden_size
    shape = attention_heads(model_config)
    sizes = {hidden, shape[0] * shape[2] if shape else hidden}
    if getattr(model_config, "intermediate_size", None):
        sizes.add(model_config.intermediate_size)
    return sizes


def attention_heads(model_config: PretrainedConfig) -> tuple[int, int, int] | None:
    """(query heads, key/value heads, head dim) of a decoder layer; None for a config without heads."""
    heads = getattr(model_config, "num_attention_heads", None)
    if not heads:
        return None
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // heads
    return heads, kv_heads, head_dim


def check_n_m_fits(prune: PruneConfig, model_config: PretrainedConfig) -> None:
    n_m = prune.n_m
    if n_m is None:
        return
    sizes = sorted(linear_input_sizes(model_config))
    if any(size % n_m[1] for size in sizes):
        raise ConfigError(
            f"prune.pattern {prune.pattern}: M={n_m[1]} must divide every Linear input size of this model "
            f"({', '.join(map(str, sizes))}); try 2:4"
        )


def check_disk_space(config: RunConfig) -> None:
    """Saved model and layer checkpoints each take about the model's size, the compressed copy (where one
    is written) at most about 0.6 of it; masks 1/32 of it (fp32)."""
    source = Path(model_source(config.model))
    if not source.is_dir():
        return  # a hub model's size is unknown before download; the download itself will complain
    model_bytes = sum(f.stat().st_size for f in source.glob("*.safetensors")) or sum(
        f.stat().st_size for f in source.glob("*.bin")
    )
    bitmask = config.save_compressed == "sparse-bitmask"  # kept values + bitmask at 50%
    packed = bool(config.save_compressed) and config.prune.method.capabilities().export_format == "pack-quantized"
    compressed = 0.6 * int(config.save_model and (bitmask or packed))
    needed = model_bytes * (int(config.save_model) + compressed + int(config.checkpoint)) + model_bytes / 32
    out = Path(config.out or "runs").absolute()
    existing = next(p for p in (out, *out.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise ConfigError(
            f"the run needs about {needed / GIB:.1f} GiB in {existing} but {free / GIB:.1f} GiB are free; "
            "free space, choose another --out, or set --checkpoint false / --save_model false"
        )


def check_token_ids(windows: dict[str, Any], model_config: PretrainedConfig, source: str) -> None:
    """Every token id of the windows indexes the model's embedding: an id past the vocabulary (a token
    file made with another tokenizer, a tokenizer larger than the model's embedding) would read
    another row, or fail on the GPU, instead of being refused."""
    text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    vocab = text.vocab_size
    for name, tokens in windows.items():
        if tokens is None or tokens.ids.numel() == 0:
            continue
        low, high = (int(value) for value in torch.aminmax(tokens.ids))
        if low < 0 or high >= vocab:
            bad = low if low < 0 else high
            raise DataError(
                f"{name} windows (data.source {source}) hold token id {bad}, outside the model's vocabulary of "
                f"{vocab} (ids 0 to {vocab - 1}); were they made with another tokenizer?"
            )


def check_finite_weights(model: torch.nn.Module) -> None:
    """Every parameter of the model is finite: embeddings, norms and head too, not only the Linears the
    pruner checks (it sees an embedding only through the rows the calibration windows read)."""
    for name, parameter in model.named_parameters():
        if not bool(torch.isfinite(torch.stack(torch.aminmax(parameter.detach()))).all()):
            raise NumericalError(f"{name}: the weights hold NaN or inf (checked after pruning)")
