"""The one place that knows architectures: decoder layers, prunable Linears, layer inputs.

Works for the Llama, Mistral, Qwen2, Gemma-3 and Cohere (Aya-23) decoders of transformers 5, and
for any causal LM whose decoder layers sit in one ModuleList of length num_hidden_layers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lp_prune.pruning.statistics import InputStatistics, TokenSample

# "True sequential" order: each group is pruned after the groups before it, on their pruned outputs.
SEQUENTIAL_GROUPS: tuple[tuple[str, ...], ...] = (
    ("q_proj", "k_proj", "v_proj"),
    ("o_proj",),
    ("gate_proj", "up_proj"),
    ("down_proj",),
)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers: the ModuleList whose length is config.num_hidden_layers."""
    n_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (n_layers is None or len(module) == n_layers):
            return module
    raise ValueError(f"no decoder layer list found in {type(model).__name__}")


def decoder_body(model: nn.Module) -> nn.Module:
    """The module that embeds tokens and runs the layers (model.model), without the LM head."""
    layers = decoder_layers(model)
    for _, module in model.named_modules():
        if any(child is layers for child in module.children()):
            return module
    raise ValueError(f"no module owns the decoder layers in {type(model).__name__}")


def final_hidden_states(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """The decoder body's output (after the final norm): what the LM head reads, [batch, seq, hidden]."""
    return decoder_body(model)(input_ids=input_ids, use_cache=False).last_hidden_state


def head_logits(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The model's logits for final hidden states: its LM head and the scaling its forward applies
    after it (Cohere's logit_scale, Gemma's final logit soft-capping)."""
    logits = model.get_output_embeddings()(hidden)
    transform = logit_map(model.config)
    return logits if transform is None else transform(logits)


def linear_head(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, Callable | None] | None:
    """(weight [vocab, hidden], bias, logit_map) when the LM head is a plain Linear (then `head_logits`
    is logit_map(hidden @ weight.T + bias)); None for any other head."""
    head = model.get_output_embeddings()
    if type(head) is not nn.Linear:
        return None
    return head.weight, head.bias, logit_map(model.config)


def logit_map(config: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """What a causal LM's forward does to the head's output, in place: Cohere's logit_scale, then
    Gemma's final soft-capping cap * tanh(logits / cap); None when it does nothing."""
    scale = getattr(config, "logit_scale", None)
    cap = getattr(config, "final_logit_softcapping", None)
    if scale is None and cap is None:
        return None

    def apply(logits: torch.Tensor) -> torch.Tensor:
        if scale is not None:
            logits = logits.mul_(scale)
        if cap is not None:
            logits = logits.div_(cap).tanh_().mul_(cap)
        return logits

    return apply


def layer_prefix(model: nn.Module, index: int) -> str:
    """Full module name of decoder layer `index`, e.g. 'model.layers.3'."""
    layer = decoder_layers(model)[index]
    return next(name for name, module in model.named_modules() if module is layer)


def prunable_linears(layer: nn.Module) -> dict[str, nn.Linear]:
    """Every Linear inside a decoder layer, by name relative to the layer (e.g. 'self_attn.q_proj')."""
    return {name: module for name, module in layer.named_modules() if isinstance(module, nn.Linear)}


def projection(name: str) -> str:
    """Short projection type of a Linear name: 'model.layers.3.self_attn.q_proj' -> 'q_proj'."""
    return name.rsplit(".", 1)[-1]


def layer_index(name: str) -> int:
    """Decoder layer of a full module name: 'model.layers.12.mlp.down_proj' -> 12."""
    return next(int(part) for part in name.split(".") if part.isdigit())


def sequential_groups(names: Iterable[str], true_sequential: bool) -> list[list[str]]:
    """Linears pruned together. One group per layer, or the true-sequential order; names that match
    no known projection form a last group, so nothing is skipped."""
    names = list(names)
    if not true_sequential:
        return [names]
    groups = [[n for n in names if projection(n) in group] for group in SEQUENTIAL_GROUPS]
    known = {n for group in groups for n in group}
    groups.append([n for n in names if n not in known])
    return [g for g in groups if g]


def run_layer(layer: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    """Call a decoder layer with its captured arguments; transformers 5 returns a Tensor, older a tuple."""
    out = layer(hidden, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@dataclass
class LayerInputs:
    """Layer-0 hidden states per calibration batch, and each layer's own call arguments per batch.

    Layers of one model differ in their arguments (Gemma-3: sliding-window vs full attention masks
    and rotary tables), so every layer keeps what it was called with. Tensors shared between layers
    are stored once (the same object is referenced).
    """

    hidden: list[torch.Tensor]
    kwargs: list[list[dict[str, Any]]]  # [layer][batch]


def capture_layer_inputs(model: nn.Module, batches: Iterable[torch.Tensor], hidden: Any = None) -> LayerInputs:
    """Run the decoder body with every layer replaced by the identity, recording layer inputs.

    Only embeddings, masks and rotary tables are computed: no layer and no LM head runs.
    `hidden` receives layer 0's inputs batch by batch (`append`); a new list by default.
    """
    layers = decoder_layers(model)
    body = decoder_body(model)
    hidden = [] if hidden is None else hidden
    kwargs: list[list[dict[str, Any]]] = [[] for _ in layers]

    def recorder(index: int):
        def hook(_module: nn.Module, args: tuple, call_kwargs: dict[str, Any]) -> None:
            call_kwargs = dict(call_kwargs)
            state = args[0] if args else call_kwargs.pop("hidden_states")
            if index == 0:
                hidden.append(state)
            kwargs[index].append(call_kwargs)

        return hook

    with _identity_layers(layers, recorder), torch.no_grad():
        for batch in batches:
            body(input_ids=batch, use_cache=False)
    return LayerInputs(hidden, kwargs)


def to_device(value: Any, device: torch.device, memo: dict[int, Any] | None = None) -> Any:
    """Move the tensors in nested call arguments to `device`; a tensor shared by several layers'
    arguments is moved once and stays shared (pass the same memo)."""
    memo = {} if memo is None else memo
    if isinstance(value, torch.Tensor):
        if id(value) not in memo:
            memo[id(value)] = value.to(device)
        return memo[id(value)]
    if isinstance(value, dict):
        return {k: to_device(v, device, memo) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device, memo) for v in value)
    return value


@contextmanager
def _identity_layers(layers: nn.ModuleList, recorder) -> Iterator[None]:
    handles = []
    try:
        for index, layer in enumerate(layers):
            handles.append(layer.register_forward_pre_hook(recorder(index), with_kwargs=True))
            layer.forward = _identity
        yield
    finally:
        for handle in handles:
            handle.remove()
        for layer in layers:
            if "forward" in vars(layer):
                del layer.forward


def _identity(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return hidden_states


class _InputsSeen(Exception):
    """Raised inside a layer's forward once every watched Linear has received its input."""


class InputCollector:
    """Forward pre-hooks that accumulate InputStatistics for a set of Linears.

    Linears fed the same tensor one after another (q/k/v, gate/up) share one InputStatistics, so
    one X^T X is computed and kept for them: the hook sees the very tensor object the layer passes
    on, and an identity check finds the repeat. The sharing found in the first batch must hold in
    every batch.

    `run(layer, hidden, kwargs, first_window)` runs a layer only until every watched Linear has had
    its input, then stops: a statistics pass needs the inputs, not the rest of the layer (all
    Linears: down_proj and what follows it; a true-sequential group: everything after it). The same
    hook records and stops, so no other hook's order matters. A Linear the layer never calls (an
    unrouted expert) leaves the forward to run to its end. `hooks=False`: the caller feeds
    `accumulate()` itself.
    """

    def __init__(
        self,
        linears: dict[str, nn.Linear],
        keep_gram: bool,
        sample: TokenSample | None = None,
        weights: torch.Tensor | None = None,
        hooks: bool = True,
    ) -> None:
        self._linears = linears
        self._new = lambda linear: InputStatistics(linear.in_features, linear.weight.device, keep_gram, sample, weights)
        self._statistics: dict[str, InputStatistics] = {}
        self._leaders: dict[int, str] = {}  # id(statistics) -> the Linear that feeds it
        self._last_input: torch.Tensor | None = None
        self._last_name: str | None = None
        self.first_window = 0  # calibration-set index of the current batch's first window
        self.seconds = 0.0  # time spent accumulating statistics
        self._waiting: set[str] | None = None  # inside run(): watched Linears whose input is still to come
        self._handles = [linear.register_forward_pre_hook(self._hook(n)) for n, linear in linears.items() if hooks]

    @property
    def statistics(self) -> dict[str, InputStatistics]:
        """Every watched Linear's statistics (Linears that shared an input share the object)."""
        for name, linear in self._linears.items():
            if name not in self._statistics:  # never called: empty statistics, the solve will say so
                self._statistics[name] = self._new(linear)
        return self._statistics

    def _hook(self, name: str):
        def hook(_module: nn.Module, args: tuple) -> None:
            start = time.perf_counter()
            self.accumulate(name, args[0])  # the layer's own tensor: its identity reveals a shared input
            self.seconds += time.perf_counter() - start
            if self._waiting is not None:
                self._waiting.discard(name)
                if not self._waiting:
                    raise _InputsSeen

        return hook

    def run(self, layer: nn.Module, hidden: torch.Tensor, kwargs: dict[str, Any], first_window: int = 0) -> None:
        """Run `layer` on one batch as far as the last watched Linear's input (statistics only)."""
        self.first_window = first_window
        self._waiting = set(self._linears)
        try:
            with suppress(_InputsSeen), torch.no_grad():
                run_layer(layer, hidden, kwargs)
        finally:
            self._waiting = None

    def accumulate(self, name: str, x: torch.Tensor) -> None:
        """Add inputs x of Linear `name` (what the hook does; callable directly)."""
        if x is self._last_input:  # the same tensor as the Linear before: its statistics have it already
            shared = self._statistics[self._last_name]
            if self._statistics.setdefault(name, shared) is not shared:
                raise RuntimeError(f"{name} shared an input in one batch and not in another")
            return
        stats = self._statistics.get(name)
        if stats is None:
            stats = self._statistics[name] = self._new(self._linears[name])
            self._leaders[id(stats)] = name
        elif self._leaders[id(stats)] != name:  # shared before, fed a tensor of its own now
            raise RuntimeError(f"{name} shared an input in one batch and not in another")
        stats.update(x.detach(), self.first_window)
        self._last_input, self._last_name = x, name

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._last_input = self._last_name = None
