"""Cumulative SNR per decoder layer: the dense model's hidden states against the pruned model's.

Both models run on the same held-out tokens; at every decoder layer output, sum y^2 and
sum (y - y')^2 are accumulated over tokens batch by batch, so the error propagated through the
network is measured without keeping any hidden state. SNR in dB = 10 log10(signal / noise).
"""

from __future__ import annotations

import torch

from lp_prune.metrics.pruning_error import snr_db


class CumulativeSNR:
    """Streaming signal and noise energies per decoder layer (float64: Gemma's residual stream reaches 1e5)."""

    def __init__(self, n_layers: int) -> None:
        self.signal = torch.zeros(n_layers, dtype=torch.float64)
        self.noise = torch.zeros(n_layers, dtype=torch.float64)
        self.tokens = torch.zeros(n_layers, dtype=torch.long)
        self.peak_token_noise = torch.zeros(n_layers, dtype=torch.float64)

    def update(self, layer: int, dense: torch.Tensor, pruned: torch.Tensor) -> None:
        """Add a batch of hidden states [..., d] of the dense and the pruned model at one layer."""
        dense = dense.detach().double()
        self.signal[layer] += dense.square().sum()
        token_noise = (dense - pruned.detach().double()).square().sum(-1)
        self.noise[layer] += token_noise.sum()
        self.peak_token_noise[layer] = max(self.peak_token_noise[layer], token_noise.max())
        self.tokens[layer] += dense.numel() // dense.shape[-1]

    def db(self) -> list[float]:
        """SNR in dB per layer (+inf where the pruned model matches exactly)."""
        return [snr_db(float(s), float(n)) for s, n in zip(self.signal, self.noise, strict=True)]

    def peak_token_share(self) -> list[float]:
        """Share of each layer's noise from its single worst token: near 1 means one outlier token
        (e.g. a massive-activation position) decides the SNR."""
        return [float(p / n) if n > 0 else 0.0 for p, n in zip(self.peak_token_noise, self.noise, strict=True)]

    def relative_error(self) -> list[float]:
        """sum (y - y')^2 / sum y^2 per layer."""
        return [float(n / s) if s > 0 else float("nan") for s, n in zip(self.signal, self.noise, strict=True)]
