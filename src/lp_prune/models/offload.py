"""Models larger than device memory: keep the decoder layers on the CPU, one at a time on the device.

Embeddings, final norm and LM head (small beside the layers of a 70B model) move to the device;
each decoder layer is moved there just before it runs and back to the CPU after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from lp_prune.models.layers import decoder_body, decoder_layers


def move_all_but_layers(model: nn.Module, device: torch.device | str) -> None:
    """`model.to(device)` for everything except the decoder layers (which are left where they are)."""
    body, layers = decoder_body(model), decoder_layers(model)
    name = next(n for n, child in body.named_children() if child is layers)
    setattr(body, name, nn.ModuleList())  # hide the layers from .to()
    try:
        model.to(device)
    finally:
        setattr(body, name, layers)


@contextmanager
def streamed_layers(model: nn.Module, device: torch.device | str) -> Iterator[None]:
    """Run forward passes with the layers on the CPU, each one streamed to `device` while it runs."""
    move_all_but_layers(model, device)

    def load(module: nn.Module, args: tuple) -> None:  # hooks must return None: a value replaces args/output
        module.to(device)

    def unload(module: nn.Module, args: tuple, output: object) -> None:
        module.to("cpu")

    handles = []
    for layer in decoder_layers(model):
        layer.to("cpu")
        handles.append(layer.register_forward_pre_hook(load))
        handles.append(layer.register_forward_hook(unload))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
