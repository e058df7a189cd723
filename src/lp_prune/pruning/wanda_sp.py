"""Structured Wanda: remove whole FFN channels and attention heads, chosen per layer by Wanda's score
|W_ij| * ||X_j||_2 summed over the weights that read each channel or head (the "Wanda-sp" baseline of
An et al., 2024, FLAP).

- FFN channel k: the sum over down_proj's column k (its input k is the channel's activation);
- attention head h: the sum over o_proj's columns h * head_dim ... (h + 1) * head_dim (its inputs are
  the head's output). With grouped-query attention the same number of query heads goes from every
  key/value group (a group keeps at least one), so the pruned model keeps a uniform shape.

`prune.sparsity` is the fraction of channels and of heads removed in every layer (rounded to whole
ones). The method zeroes only what reads the removed structures (down_proj's and o_proj's columns):
the rows that write them (gate/up, q) then feed nothing, and `shrink.py` removes both when it saves
the physically smaller model. Masks are therefore column sets of down_proj and o_proj, and their IoU
across calibration languages is the IoU of the removed channel and head sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lp_prune.errors import ConfigError
from lp_prune.pruning.masks import lowest_mask
from lp_prune.pruning.method import GroupInputs, PruneContext, PrunedWeight, PruningMethod, Runtime, zeroed
from lp_prune.pruning.registry import register


def channel_scores(weight: torch.Tensor, input_sq_norms: torch.Tensor) -> torch.Tensor:
    """Per input column j of `weight` [d_out, d_in]: sum_i |W_ij| * ||X_j||_2 (float32, [d_in])."""
    return weight.detach().abs().float().sum(dim=0) * input_sq_norms.float().sqrt()


def head_scores(weight: torch.Tensor, input_sq_norms: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Per head of o_proj's input (consecutive blocks of head_dim columns): the sum of its columns' scores."""
    return channel_scores(weight, input_sq_norms).reshape(-1, head_dim).sum(dim=1)


def removed_count(total: int, sparsity: float) -> int:
    return round(total * sparsity)


def channels_to_remove(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """True for the round(n * sparsity) lowest-scoring channels."""
    return lowest_mask(scores.reshape(1, -1), removed_count(scores.numel(), sparsity)).reshape(-1)


def heads_to_remove(scores: torch.Tensor, kv_heads: int, sparsity: float) -> torch.Tensor:
    """True for the lowest-scoring query heads, the same number in every key/value group (query head h
    reads group h // (heads / kv_heads), as transformers' repeat_kv lays them out)."""
    per_group = scores.reshape(kv_heads, -1)
    return lowest_mask(per_group, removed_count(per_group.shape[1], sparsity)).reshape(-1)


def column_mask(weight: torch.Tensor, removed_columns: torch.Tensor) -> torch.Tensor:
    """The weight's mask: True over every row of the removed input columns."""
    return removed_columns.to(weight.device).unsqueeze(0).expand_as(weight).clone()


@register
@dataclass(frozen=True)
class StructuredWanda(PruningMethod):
    """Whole FFN channels and attention heads, scored by Wanda's |W| * ||X|| summed over each."""

    name = "wanda_sp"
    display_name = "Wanda-sp (structured)"
    statistics = "norms"
    structured = True
    masked_projections = ("down_proj", "o_proj")  # the readers of removed channels and heads; other masks are empty
    export_format = "shrunk"

    def solver_bytes(self, width: int, rows: int) -> int:
        return rows * width * 5  # |W| in float32 and the boolean mask

    def check(self, context: PruneContext) -> None:
        if context.n_m is not None:
            raise ConfigError(f"{self.name} removes whole channels and heads: it needs prune.pattern unstructured")
        if not 0 < context.sparsity < 1:
            raise ConfigError(f"{self.name}: prune.sparsity must lie strictly between 0 and 1, got {context.sparsity}")
        if context.heads is not None:
            heads, kv_heads, _ = context.heads
            per_group = heads // kv_heads
            if removed_count(per_group, context.sparsity) >= per_group:
                raise ConfigError(
                    f"{self.name}: prune.sparsity {context.sparsity:g} would remove all {per_group} query head(s) "
                    f"of a key/value group ({heads} heads, {kv_heads} key/value heads); use a lower sparsity"
                )

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        context: PruneContext,
        runtime: Runtime,
    ) -> list[PrunedWeight]:
        if inputs.projections == ("down_proj",):
            removed = channels_to_remove(channel_scores(weights[0], _norms(inputs)), sparsity)
        elif inputs.projections == ("o_proj",):
            if context.heads is None:
                raise ValueError(f"{self.name} needs the model's attention shape (PruneContext.heads)")
            _, kv_heads, head_dim = context.heads
            removed = heads_to_remove(head_scores(weights[0], _norms(inputs), head_dim), kv_heads, sparsity)
            removed = removed.repeat_interleave(head_dim)
        else:  # q/k/v, gate/up: what writes a removed structure goes with it when the model is shrunk
            return [zeroed(weight, torch.zeros_like(weight, dtype=torch.bool)) for weight in weights]
        return [zeroed(weights[0], column_mask(weights[0], removed))]


def _norms(inputs: GroupInputs) -> torch.Tensor:
    if inputs.sq_norms is None:
        raise ValueError("wanda_sp needs the squared input norms")
    return inputs.sq_norms
