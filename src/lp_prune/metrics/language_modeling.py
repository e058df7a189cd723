"""Perplexity and bits per byte from summed token cross-entropy.

torchmetrics' Perplexity takes the softmax and then its log: a probability below about 1e-45
(e^-103) underflows to zero in float32 (in float16 below about e^-17), its log is -inf and the
perplexity infinite. Here the summed negative log-likelihood (computed with log-softmax, which
never underflows that way) and the counts are the metric state, so values from many batches,
windows or processes add up exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchmetrics import Metric

HEAD_CHUNK = 256  # positions per LM-head call: 256 x 262k vocabulary x 4 bytes = 268 MB of logits


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed NLL of tokens 1..T-1 given their prefixes, and how many tokens were predicted."""
    predicted = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    targets = input_ids[:, 1:].reshape(-1)
    return F.cross_entropy(predicted, targets, reduction="sum"), targets.numel()


def chunked_token_nll(
    hidden: torch.Tensor, input_ids: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor], chunk: int = HEAD_CHUNK
) -> tuple[torch.Tensor, int]:
    """`token_nll` from the final hidden states, `chunk` positions at a time: the vocabulary-wide
    logits of the whole batch are never held, and each chunk's NLL is logsumexp - target logit
    (no log-softmax copy of the logits)."""
    states = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    targets = input_ids[:, 1:].reshape(-1)
    total = torch.zeros((), dtype=torch.float64, device=hidden.device)
    for start in range(0, targets.numel(), chunk):
        logits = head(states[start : start + chunk]).float()
        target_logits = logits.gather(1, targets[start : start + chunk, None]).squeeze(1)
        total += (torch.logsumexp(logits, dim=1) - target_logits).double().sum()
    return total, targets.numel()


class LanguageModelingMetric(Metric):
    """Accumulates summed NLL (nats), predicted tokens and UTF-8 bytes of those tokens."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("n_bytes", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, nll_sum: torch.Tensor, tokens: int, n_bytes: int) -> None:
        self.nll += nll_sum.detach().double()
        self.tokens += tokens
        self.n_bytes += n_bytes

    def compute(self) -> dict[str, float]:
        nll, tokens, n_bytes = float(self.nll), int(self.tokens), int(self.n_bytes)
        return {
            "perplexity": math.exp(nll / tokens) if tokens else math.nan,
            "nll_per_token": nll / tokens if tokens else math.nan,
            "bits_per_byte": nll / math.log(2) / n_bytes if n_bytes else math.nan,
            "tokens": tokens,
        }
