"""Multiple-choice rows packed so that an item's context is computed once for all its choices.

A log-likelihood request (context c, continuation t) scores log p(t | c). The choices of an item
share c, and a causal LM scoring them one row each (c + t_i) runs the context once per choice.
Packed, one row holds the item:

    tokens     c, t_1[:-1], t_2[:-1], ..., t_k[:-1]
    positions  0 .. |c|-1, then |c|, |c|+1, ... afresh for every segment t_i[:-1]
    attention  a context token sees the context before it; a segment token sees the whole context
               and its own segment's tokens up to itself, never another segment

so every token computes what it computes in its own row c + t_i (same positions, same visible
tokens): the same numbers, with the context's work done once. t_i[0] is predicted at the context's
last position, t_i[j] (j >= 1) at the position of t_i[j-1].

Pure tensor code: the caller runs the model with `additive_mask` and `position_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

CONTEXT, PADDING = 0, -1  # segment ids of the context and of padding; choice i is segment i + 1


@dataclass(frozen=True)
class ChoiceItem:
    """Requests sharing one context: `requests[i]` scores `continuations[i]` after `context`."""

    context: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]
    requests: tuple[int, ...]

    @property
    def row_length(self) -> int:
        return len(self.context) + sum(len(tokens) - 1 for tokens in self.continuations)

    @property
    def longest_request(self) -> int:
        """Input positions of the longest request in its own row (context + continuation[:-1])."""
        return len(self.context) + max(len(tokens) for tokens in self.continuations) - 1


@dataclass(frozen=True)
class PackedBatch:
    """Rows of packed items, and for every scored token the hidden state that predicts it."""

    input_ids: torch.Tensor  # [rows, length]
    position_ids: torch.Tensor  # [rows, length]
    segments: torch.Tensor  # [rows, length]: CONTEXT, choice i + 1, or PADDING
    score_rows: torch.Tensor  # [targets]
    score_positions: torch.Tensor  # [targets]
    targets: torch.Tensor  # [targets]: the token predicted there
    target_request: torch.Tensor  # [targets]: the request (index into `requests`) it belongs to
    requests: tuple[int, ...]

    def allowed(self) -> torch.Tensor:
        """Boolean [rows, length, length]: may the query (dim 1) attend to the key (dim 2)?"""
        length = self.input_ids.shape[1]
        index = torch.arange(length)
        causal = index[None, :] <= index[:, None]
        query, key = self.segments[:, :, None], self.segments[:, None, :]
        return causal & ((key == CONTEXT) | (key == query))

    def additive_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """[rows, 1, length, length]: 0 where attention is allowed, the dtype's lowest value elsewhere
        (a finite value: a padding row's softmax stays finite, and eager and SDPA attention read it alike)."""
        blocked = ~self.allowed()[:, None]
        return torch.zeros(blocked.shape, dtype=dtype).masked_fill_(blocked, torch.finfo(dtype).min)


def pack(items: Sequence[ChoiceItem], pad_id: int = 0) -> PackedBatch:
    """One row per item, right-padded to the longest row."""
    length = max(item.row_length for item in items)
    shape = (len(items), length)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    segments = torch.full(shape, PADDING, dtype=torch.long)
    rows, positions, targets, owners, requests = [], [], [], [], []
    for row, item in enumerate(items):
        n_context = len(item.context)
        input_ids[row, :n_context] = torch.tensor(item.context)
        position_ids[row, :n_context] = torch.arange(n_context)
        segments[row, :n_context] = CONTEXT
        start = n_context
        for choice, tokens in enumerate(item.continuations):
            inputs = tokens[:-1]
            end = start + len(inputs)
            input_ids[row, start:end] = torch.tensor(inputs, dtype=torch.long)
            position_ids[row, start:end] = torch.arange(n_context, n_context + len(inputs))
            segments[row, start:end] = choice + 1
            # tokens[0] after the context's last token, tokens[j] after tokens[j - 1]
            predicted_at = [n_context - 1, *range(start, end)]
            rows += [row] * len(tokens)
            positions += predicted_at
            targets += tokens
            owners += [len(requests)] * len(tokens)
            requests.append(item.requests[choice])
            start = end
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return PackedBatch(
        input_ids,
        position_ids,
        segments,
        as_long(rows),
        as_long(positions),
        as_long(targets),
        as_long(owners),
        tuple(requests),
    )


def batches(items: Sequence[ChoiceItem], max_tokens: int) -> list[list[ChoiceItem]]:
    """Items longest first, as many per batch as fit in `max_tokens` padded tokens (at least one):
    rows of a batch have similar lengths, so little padding."""
    ordered = sorted(items, key=lambda item: -item.row_length)
    out: list[list[ChoiceItem]] = []
    for item in ordered:
        if out and (len(out[-1]) + 1) * out[-1][0].row_length <= max_tokens:
            out[-1].append(item)
        else:
            out.append([item])
    return out
