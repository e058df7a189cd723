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

Short items share a row (`rows_of`): each starts its positions at 0 and sees no token of another
item, so a row of several items computes what one row per item would, without the padding.

Pure tensor code: the caller runs the model with `additive_mask` and `position_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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
    owners: torch.Tensor  # [rows, length]: the item (numbered over the batch) a token belongs to; -1: padding
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
        same_item = self.owners[:, :, None] == self.owners[:, None, :]
        return causal & same_item & ((key == CONTEXT) | (key == query))

    def additive_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """[rows, 1, length, length]: 0 where attention is allowed, the dtype's lowest value elsewhere
        (a finite value: a padding row's softmax stays finite, and eager and SDPA attention read it alike)."""
        blocked = ~self.allowed()[:, None]
        return torch.zeros(blocked.shape, dtype=dtype).masked_fill_(blocked, torch.finfo(dtype).min)


def pack(rows: Sequence[Sequence[ChoiceItem]], pad_id: int = 0) -> PackedBatch:
    """Each row's items one after another (every item with positions from 0, seeing only itself),
    rows right-padded to the longest."""
    length = max(sum(item.row_length for item in row) for row in rows)
    shape = (len(rows), length)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    position_ids = torch.zeros(shape, dtype=torch.long)
    segments = torch.full(shape, PADDING, dtype=torch.long)
    owners = torch.full(shape, -1, dtype=torch.long)
    scored = _Scored()
    n_items = 0
    for row_index, row in enumerate(rows):
        start = 0
        for item in row:
            end = start + item.row_length
            owners[row_index, start:end] = n_items
            n_items += 1
            _lay_out(item, row_index, start, input_ids, position_ids, segments, scored)
            start = end
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return PackedBatch(
        input_ids,
        position_ids,
        segments,
        owners,
        as_long(scored.rows),
        as_long(scored.positions),
        as_long(scored.targets),
        as_long(scored.owners),
        tuple(scored.requests),
    )


@dataclass
class _Scored:
    """The scored tokens of a batch, gathered item by item."""

    rows: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # index into `requests`
    requests: list[int] = field(default_factory=list)


def _lay_out(
    item: ChoiceItem,
    row: int,
    offset: int,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    segments: torch.Tensor,
    scored: _Scored,
) -> None:
    """One item at `offset` of `row`: its context, then every choice's tokens but the last."""
    n_context = len(item.context)
    context_end = offset + n_context
    input_ids[row, offset:context_end] = torch.tensor(item.context)
    position_ids[row, offset:context_end] = torch.arange(n_context)
    segments[row, offset:context_end] = CONTEXT
    start = context_end
    for choice, tokens in enumerate(item.continuations):
        inputs = tokens[:-1]
        end = start + len(inputs)
        input_ids[row, start:end] = torch.tensor(inputs, dtype=torch.long)
        position_ids[row, start:end] = torch.arange(n_context, n_context + len(inputs))
        segments[row, start:end] = choice + 1
        # tokens[0] after the context's last token, tokens[j] after tokens[j - 1]
        scored.rows += [row] * len(tokens)
        scored.positions += [context_end - 1, *range(start, end)]
        scored.targets += tokens
        scored.owners += [len(scored.requests)] * len(tokens)
        scored.requests.append(item.requests[choice])
        start = end


def rows_of(items: Sequence[ChoiceItem], row_tokens: int) -> list[list[ChoiceItem]]:
    """Items longest first, each into the first row with room for it (rows of at most `row_tokens`
    tokens; a longer item gets a row of its own): short items share rows instead of padding them."""
    rows: list[list[ChoiceItem]] = []
    room: list[int] = []
    for item in sorted(items, key=lambda item: -item.row_length):
        fits = next((i for i, free in enumerate(room) if free >= item.row_length), None)
        if fits is None:
            rows.append([item])
            room.append(row_tokens - item.row_length)
        else:
            rows[fits].append(item)
            room[fits] -= item.row_length
    return rows


def batches(rows: Sequence[Sequence[ChoiceItem]], max_tokens: int) -> list[list[Sequence[ChoiceItem]]]:
    """Rows longest first, as many per batch as fit in `max_tokens` padded tokens (at least one):
    rows of a batch have similar lengths, so little padding."""
    length = lambda row: sum(item.row_length for item in row)  # noqa: E731
    out: list[list[Sequence[ChoiceItem]]] = []
    for row in sorted(rows, key=lambda row: -length(row)):
        if out and (len(out[-1]) + 1) * length(out[-1][0]) <= max_tokens:
            out[-1].append(row)
        else:
            out.append([row])
    return out
