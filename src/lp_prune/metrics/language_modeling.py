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

# Logits are made one [POSITION_CHUNK x VOCAB_CHUNK] block at a time (1024 x 4096 x 4 B = 16 MB, inside
# a CPU's last-level cache): a vocabulary-wide block per position (262k x 4 B for Gemma) makes the
# head memory-bound, since every logit is written out and read back before it is reduced.
POSITION_CHUNK = 1024
VOCAB_CHUNK = 4096

LogitMap = Callable[[torch.Tensor], torch.Tensor]  # in-place post-processing of a logits block


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed NLL of tokens 1..T-1 given their prefixes, and how many tokens were predicted."""
    predicted = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    targets = input_ids[:, 1:].reshape(-1)
    return F.cross_entropy(predicted, targets, reduction="sum"), targets.numel()


def fused_token_nll(
    hidden: torch.Tensor,
    input_ids: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    logit_map: LogitMap | None = None,
    position_chunk: int = POSITION_CHUNK,
    vocab_chunk: int = VOCAB_CHUNK,
) -> tuple[torch.Tensor, int]:
    """`token_nll` of the logits `logit_map(hidden @ weight.T + bias)`, never holding them whole
    (`target_log_probs`); the summed NLL is float64."""
    states = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    targets = input_ids[:, 1:].reshape(-1)
    total = torch.zeros((), dtype=torch.float64, device=hidden.device)
    for start in range(0, targets.numel(), position_chunk):
        end = start + position_chunk
        log_probs, _ = _block_log_probs(states[start:end], targets[start:end], weight, bias, logit_map, vocab_chunk)
        total -= log_probs.double().sum()
    return total, targets.numel()


def target_log_probs(
    states: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    logit_map: LogitMap | None = None,
    position_chunk: int = POSITION_CHUNK,
    vocab_chunk: int = VOCAB_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For states [P, hidden] and targets [P]: log p(target) under the logits
    `logit_map(states @ weight.T + bias)` (float32, as log-softmax's), and whether the target holds
    the largest logit (greedy decoding picks it; a tie counts as greedy).

    Per block of positions, an online logsumexp runs over vocabulary chunks (running maximum and
    rescaled sum of exponentials), and each target's logit is picked out of the chunk that holds it.
    """
    log_probs, greedy = [], []
    for start in range(0, targets.numel(), position_chunk):
        end = start + position_chunk
        block = _block_log_probs(states[start:end], targets[start:end], weight, bias, logit_map, vocab_chunk)
        log_probs.append(block[0])
        greedy.append(block[1])
    if not log_probs:
        return torch.zeros(0, device=states.device), torch.zeros(0, dtype=torch.bool, device=states.device)
    return torch.cat(log_probs), torch.cat(greedy)


def _block_log_probs(
    states: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    logit_map: LogitMap | None,
    vocab_chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    rows = states.shape[0]
    running_max = torch.full((rows,), -math.inf, device=states.device)
    running_sum = torch.zeros(rows, device=states.device)
    target_logit = torch.zeros(rows, device=states.device)
    row_index = torch.arange(rows, device=states.device)
    buffer = torch.empty(rows, min(vocab_chunk, weight.shape[0]), dtype=weight.dtype, device=states.device)
    for first in range(0, weight.shape[0], vocab_chunk):
        chunk = weight[first : first + vocab_chunk]
        # A reused buffer: a fresh 16 MB block per chunk would be mapped and faulted in every time.
        block = torch.mm(states, chunk.T, out=buffer) if chunk.shape[0] == buffer.shape[1] else states @ chunk.T
        logits = block.float()
        if bias is not None:
            logits += bias[first : first + chunk.shape[0]].float()
        if logit_map is not None:
            logits = logit_map(logits)
        local = targets - first
        inside = (local >= 0) & (local < chunk.shape[0])
        target_logit[inside] = logits[row_index[inside], local[inside]]
        new_max = torch.maximum(running_max, logits.amax(dim=1))
        running_sum.mul_(torch.exp(running_max - new_max)).add_(logits.sub_(new_max[:, None]).exp_().sum(dim=1))
        running_max = new_max
    return target_logit - running_max - running_sum.log(), target_logit >= running_max


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
