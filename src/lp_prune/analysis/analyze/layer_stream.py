"""Stream the hidden states and FFN gate activity of one or more models on the same tokens.

One batch at a time: the decoder's layer-0 inputs and per-layer call arguments are captured once
(embeddings, masks and rotary tables do not depend on pruned weights), then every model runs layer
by layer side by side. Each step yields that layer's outputs and gate activity for all models, so
callers update streaming statistics and nothing but the current layer of the current batch is held.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from lp_prune.models.ffn import GatedFFN, gated_ffn
from lp_prune.models.layers import capture_layer_inputs, decoder_layers, run_layer


@dataclass
class LayerStep:
    """Outputs of decoder layer `layer` for one batch, one entry per model, positions selected."""

    layer: int
    hidden: list[torch.Tensor]  # [tokens, hidden_size]
    gate_positive: list[torch.Tensor]  # bool [tokens, intermediate_size]: act(gate_proj x) > 0


class GateTap:
    """Forward hook on an FFN's gate projection: which neurons' activation is positive.

    Goes through the layer's own act_fn so the test is right for any activation (for GELU-tanh,
    as in Gemma, act > 0 exactly where the gate is > 0; for SiLU likewise; not for all functions).
    """

    def __init__(self, ffn: GatedFFN, first_position: int) -> None:
        self.positive: torch.Tensor | None = None
        self._act_fn = ffn.act_fn
        self._first = first_position
        self._handle = ffn.gate_proj.register_forward_hook(self._hook)

    def _hook(self, _module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        active = self._act_fn(output[:, self._first :]) > 0
        self.positive = active.reshape(-1, active.shape[-1])

    def remove(self) -> None:
        self._handle.remove()


def stream_layers(
    models: Sequence[nn.Module], batches: Iterable[torch.Tensor], first_position: int
) -> Iterator[LayerStep]:
    """Run all models (same architecture) on each batch of token ids [b, seqlen], layer by layer.

    Positions before `first_position` are left out of what is yielded (BOS: it carries no language,
    and in Gemma its huge-norm state would dominate every sum).
    """
    layer_lists = [decoder_layers(model) for model in models]
    with torch.no_grad():
        for batch in batches:
            inputs = capture_layer_inputs(models[0], [batch])
            states = [inputs.hidden[0] for _ in models]
            for index in range(len(layer_lists[0])):
                taps = [GateTap(gated_ffn(layers[index]), first_position) for layers in layer_lists]
                try:
                    states = [
                        run_layer(layers[index], state, inputs.kwargs[index][0])
                        for layers, state in zip(layer_lists, states, strict=True)
                    ]
                finally:
                    for tap in taps:
                        tap.remove()
                hidden = [state[:, first_position:].reshape(-1, state.shape[-1]) for state in states]
                yield LayerStep(index, hidden, [_tapped(tap) for tap in taps])


def _tapped(tap: GateTap) -> torch.Tensor:
    if tap.positive is None:
        raise RuntimeError("the FFN gate projection did not run during its decoder layer")
    return tap.positive
