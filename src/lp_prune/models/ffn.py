"""The gated FFN of a decoder layer: where its gate projection and activation function live.

Llama, Mistral, Qwen2, Gemma-3 and Cohere all compute down_proj(act_fn(gate_proj(x)) * up_proj(x))
in `layer.mlp`; LAPE needs the gate's output and the activation applied to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lp_prune.errors import UserError


@dataclass
class GatedFFN:
    gate_proj: nn.Linear
    act_fn: Callable[[torch.Tensor], torch.Tensor]
    intermediate_size: int


def gated_ffn(layer: nn.Module) -> GatedFFN:
    """`layer.mlp.gate_proj` and `layer.mlp.act_fn`; a UserError for FFNs without a gate."""
    mlp = getattr(layer, "mlp", None)
    gate = getattr(mlp, "gate_proj", None)
    act_fn = getattr(mlp, "act_fn", None)
    if not isinstance(gate, nn.Linear) or act_fn is None:
        raise UserError(
            f"{type(layer).__name__} has no gated FFN (mlp.gate_proj and mlp.act_fn): LAPE cannot measure it"
        )
    return GatedFFN(gate, act_fn, gate.out_features)
