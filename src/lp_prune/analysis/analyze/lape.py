"""LAPE (Tang et al., ACL 2024): language-specific FFN neurons from activation probabilities.

p[l, j, k] = share of tokens of language k for which act(gate_proj x)_j > 0 in layer l, counted
batch by batch. Normalised over languages, its entropy is low for neurons that fire mostly for a
few languages. As in the reference (RUCAIBox/Language-Specific-Neurons): the bar is the 95th
percentile of all p; among neurons whose highest p exceeds the bar, the `top_rate` (1%) of all
neurons with the lowest entropy are language-specific, and each belongs to the languages whose p
exceeds the bar. The analysis then compares p before and after pruning for those neurons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


class ActivationCounts:
    """Streaming count, per layer and FFN neuron, of tokens with a positive activation."""

    def __init__(self, n_layers: int, intermediate_size: int) -> None:
        self.positive = torch.zeros(n_layers, intermediate_size, dtype=torch.long)
        self.tokens = torch.zeros(n_layers, dtype=torch.long)

    def update(self, layer: int, positive: torch.Tensor) -> None:
        """Add a bool tensor [..., intermediate_size]: True where act(gate_proj x) > 0."""
        flat = positive.reshape(-1, positive.shape[-1])
        self.positive[layer] += flat.sum(0)
        self.tokens[layer] += flat.shape[0]

    def probabilities(self) -> torch.Tensor:
        """[n_layers, intermediate_size] float64."""
        if bool((self.tokens == 0).any()):
            raise ValueError("some layers saw no tokens: no activation probability")
        return self.positive.double() / self.tokens[:, None]


def stack_probabilities(counts: Mapping[str, ActivationCounts], languages: Sequence[str]) -> torch.Tensor:
    """[n_layers, intermediate_size, K] with the languages in the given order."""
    return torch.stack([counts[lang].probabilities() for lang in languages], dim=-1)


def language_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy over languages (last axis) of p normalised to sum to one; 0 log 0 = 0."""
    total = probs.sum(-1, keepdim=True)
    normed = torch.where(total > 0, probs / total.clamp_min(torch.finfo(probs.dtype).tiny), torch.zeros_like(probs))
    return -(normed * torch.log(normed.clamp_min(torch.finfo(probs.dtype).tiny))).sum(-1)


def percentile_value(values: torch.Tensor, rate: float) -> float:
    """The round(n * rate)-th smallest value (the reference's kthvalue), for any tensor size."""
    flat = values.flatten()
    k = min(max(1, round(flat.numel() * rate)), flat.numel())
    return float(flat.kthvalue(k).values)


@dataclass
class LanguageNeurons:
    """The language-specific neurons: layer and neuron index, the languages each belongs to."""

    languages: list[str]
    layer: torch.Tensor  # long [n]
    neuron: torch.Tensor  # long [n]
    member: torch.Tensor  # bool [n, K]: neuron i belongs to language k
    entropy: torch.Tensor  # [n]
    bar: float  # activation probability a language's p must exceed

    def __len__(self) -> int:
        return self.layer.numel()

    def of_language(self, lang: str) -> torch.Tensor:
        """Bool [n]: which neurons belong to `lang`."""
        return self.member[:, self.languages.index(lang)]

    def in_layer(self, layer: int) -> torch.Tensor:
        """Neuron indices of one layer."""
        return self.neuron[self.layer == layer]


def language_specific_neurons(
    probs: torch.Tensor, languages: Sequence[str], top_rate: float = 0.01, bar_rate: float = 0.95
) -> LanguageNeurons:
    """Select LAPE neurons from p [n_layers, intermediate_size, K]."""
    if probs.shape[-1] != len(languages):
        raise ValueError(f"probabilities hold {probs.shape[-1]} languages, {len(languages)} names given")
    bar = percentile_value(probs, bar_rate)
    entropy = language_entropy(probs)
    eligible = probs.amax(-1) > bar
    n_select = min(round(top_rate * entropy.numel()), int(eligible.sum()))
    ranked = torch.where(eligible, entropy, torch.full_like(entropy, torch.inf)).flatten()
    index = torch.topk(ranked, n_select, largest=False).indices.sort().values
    layer, neuron = index // probs.shape[1], index % probs.shape[1]
    return LanguageNeurons(
        languages=list(languages),
        layer=layer,
        neuron=neuron,
        member=probs[layer, neuron] > bar,
        entropy=entropy[layer, neuron],
        bar=bar,
    )


@dataclass
class OwnLanguageShift:
    """One row per (neuron, language it belongs to): p on that language's text before and after pruning."""

    language: list[str]
    layer: torch.Tensor
    dense: torch.Tensor
    pruned: torch.Tensor

    @property
    def shift(self) -> torch.Tensor:
        return self.pruned - self.dense


def own_language_shift(dense: torch.Tensor, pruned: torch.Tensor, neurons: LanguageNeurons) -> OwnLanguageShift:
    """p of each language-specific neuron on its own language(s), dense vs pruned ([L, F, K] inputs)."""
    rows, columns = torch.nonzero(neurons.member, as_tuple=True)
    layer, neuron = neurons.layer[rows], neurons.neuron[rows]
    return OwnLanguageShift(
        language=[neurons.languages[k] for k in columns.tolist()],
        layer=layer,
        dense=dense[layer, neuron, columns],
        pruned=pruned[layer, neuron, columns],
    )
