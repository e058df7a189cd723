"""A structurally pruned model made physically smaller: removed FFN channels and attention heads cut
out of the Linears, and the config changed to match, so `save_pretrained` writes a model that
`from_pretrained` loads at its reduced size.

Structured methods (pruning/wanda_sp.py) zero whole columns of down_proj (an FFN channel) and whole
head blocks of o_proj's columns (a query head). Whatever writes only into a removed structure then
feeds nothing: the channel's gate/up rows and the head's q_proj rows. Cutting them out with the
columns leaves every layer's output unchanged (the shrunk model computes what the masked one does).
Key/value heads stay: every group keeps the same number of query heads.

Every layer must keep the same number of channels and heads (the config has one intermediate_size
and one num_attention_heads).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lp_prune.errors import UserError
from lp_prune.models.layers import decoder_layers, layer_prefix
from lp_prune.pruning.masks import PackedMask

log = logging.getLogger(__name__)


@dataclass
class KeptStructures:
    """Per decoder layer: the indices of the query heads and FFN channels that stay."""

    heads: list[torch.Tensor]
    channels: list[torch.Tensor]


def kept_structures(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> KeptStructures:
    """Read the kept heads and channels off o_proj's and down_proj's column masks (True = pruned)."""
    head_dim = _head_dim(model.config)
    heads, channels = [], []
    for index in range(len(decoder_layers(model))):
        prefix = layer_prefix(model, index)
        o_columns = _removed_columns(masks[f"{prefix}.self_attn.o_proj"])
        down_columns = _removed_columns(masks[f"{prefix}.mlp.down_proj"])
        removed_heads = o_columns.reshape(-1, head_dim)
        if not torch.equal(removed_heads.all(dim=1), removed_heads.any(dim=1)):
            raise UserError(f"layer {index}: o_proj's mask removes parts of heads, not whole heads: not structured")
        heads.append(torch.nonzero(~removed_heads.all(dim=1)).flatten())
        channels.append(torch.nonzero(~down_columns).flatten())
    if len({len(h) for h in heads}) > 1 or len({len(c) for c in channels}) > 1:
        raise UserError("layers keep different numbers of heads or channels: transformers' configs need one size")
    return KeptStructures(heads, channels)


def unpacked(masks: Mapping[str, torch.Tensor | PackedMask]) -> dict[str, torch.Tensor]:
    return {name: mask.unpack() if isinstance(mask, PackedMask) else mask for name, mask in masks.items()}


def shrink(model: nn.Module, kept: KeptStructures) -> None:
    """Cut the removed heads and channels out of `model` in place, and update its config.

    Where the config cannot hold the cut number of heads (transformers checks e.g. that hidden_size is
    a multiple of num_attention_heads, even with an explicit head_dim), the removed heads stay in the
    model as zeros (their o_proj columns are zero: the outputs are the same) and only the FFN is cut."""
    config = model.config
    head_dim = _head_dim(config)
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    refusal = _refused_head_count(config, len(kept.heads[0]), head_dim)
    if refusal:
        log.warning("heads not cut out (they stay as zeros): %s", refusal)
    for layer, heads, channels in zip(decoder_layers(model), kept.heads, kept.channels, strict=True):
        attention, mlp = layer.self_attn, layer.mlp
        if not refusal:
            rows = (heads[:, None] * head_dim + torch.arange(head_dim)).flatten()
            _keep_rows(attention.q_proj, rows)
            _keep_columns(attention.o_proj, rows)
            attention.num_key_value_groups = len(heads) // kv_heads
        _keep_rows(mlp.gate_proj, channels)
        _keep_rows(mlp.up_proj, channels)
        _keep_columns(mlp.down_proj, channels)
    if not refusal:
        config.num_attention_heads = len(kept.heads[0])
        config.head_dim = head_dim  # explicit: hidden_size // num_attention_heads no longer gives it
    config.intermediate_size = len(kept.channels[0])


def _refused_head_count(config: Any, heads: int, head_dim: int) -> str | None:
    """Why transformers would refuse a config with `heads` query heads, or None."""
    trial = copy.deepcopy(config)
    trial.num_attention_heads = heads
    trial.head_dim = head_dim
    validate = getattr(trial, "validate", None)
    try:
        if validate is not None:
            validate()
    except Exception as error:  # transformers' validators raise their own error types
        return f"{type(config).__name__} with {heads} heads: {error}".replace("\n", " ")
    return None


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _removed_columns(mask: torch.Tensor) -> torch.Tensor:
    """Columns pruned in every row; a column pruned in some rows only is not a removed structure."""
    return mask.all(dim=0)


def _keep_rows(linear: nn.Linear, rows: torch.Tensor) -> None:
    linear.weight = nn.Parameter(linear.weight.data[rows].clone(), requires_grad=False)
    if linear.bias is not None:
        linear.bias = nn.Parameter(linear.bias.data[rows].clone(), requires_grad=False)
    linear.out_features = len(rows)


def _keep_columns(linear: nn.Linear, columns: torch.Tensor) -> None:
    linear.weight = nn.Parameter(linear.weight.data[:, columns].clone(), requires_grad=False)
    linear.in_features = len(columns)
