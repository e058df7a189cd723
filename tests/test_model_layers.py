"""Layer-by-layer execution must reproduce the full model, for every supported architecture."""

import pytest
import torch

from lp_prune.config.targets import LinearTargets, matches
from lp_prune.models.layers import (
    InputCollector,
    capture_layer_inputs,
    decoder_layers,
    prunable_linears,
    run_layer,
    sequential_groups,
)
from lp_prune.pruning.statistics import gram
from tiny_models import ARCHITECTURES, tiny_model


def layer_by_layer(model, batches):
    inputs = capture_layer_inputs(model, batches)
    hidden = inputs.hidden
    with torch.no_grad():
        for index, layer in enumerate(decoder_layers(model)):
            hidden = [run_layer(layer, h, inputs.kwargs[index][b]) for b, h in enumerate(hidden)]
    return hidden


def logits_with_last_hidden(model, ids, last_hidden):
    """The model's own head (norm, lm_head, scaling) applied to a given last-layer output."""
    last = decoder_layers(model)[-1]
    handle = last.register_forward_hook(lambda _m, _a, out: last_hidden)
    try:
        with torch.no_grad():
            return model(input_ids=ids).logits
    finally:
        handle.remove()


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_layer_by_layer_reproduces_full_logits(arch, attention):
    model = tiny_model(arch, attention=attention)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(3, 96, (2, 16), generator=g), torch.randint(3, 96, (3, 16), generator=g)]
    outputs = layer_by_layer(model, batches)
    for ids, out in zip(batches, outputs, strict=False):
        with torch.no_grad():
            full = model(input_ids=ids).logits
        ours = logits_with_last_hidden(model, ids, out)
        assert (full - ours).abs().max().item() <= 1e-5


def test_gemma3_layers_keep_their_own_arguments():
    model = tiny_model("gemma3")
    inputs = capture_layer_inputs(model, [torch.randint(3, 96, (1, 16))])
    sliding, full = inputs.kwargs[0][0], inputs.kwargs[1][0]
    assert sliding["position_embeddings"][0] is not full["position_embeddings"][0]
    assert inputs.kwargs[2][0]["position_embeddings"][0] is sliding["position_embeddings"][0]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_prunable_linears_and_groups(arch):
    layer = decoder_layers(tiny_model(arch))[0]
    names = list(prunable_linears(layer))
    assert {n.rsplit(".", 1)[-1] for n in names} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    groups = sequential_groups(names, true_sequential=True)
    assert [[n.rsplit(".", 1)[-1] for n in g] for g in groups] == [
        ["q_proj", "k_proj", "v_proj"],
        ["o_proj"],
        ["gate_proj", "up_proj"],
        ["down_proj"],
    ]
    assert sequential_groups(names, true_sequential=False) == [names]


@pytest.fixture
def gram_products(monkeypatch):
    """Counts the X^T X products each Gram accumulator receives (keyed by the accumulator's id)."""
    from collections import Counter

    from lp_prune.pruning import statistics

    counts: Counter[int] = Counter()
    real = statistics.add_gram

    def counting(target, x, *args, **kwargs):
        counts[id(target)] += 1
        return real(target, x, *args, **kwargs)

    monkeypatch.setattr(statistics, "add_gram", counting)
    return counts


def test_input_collector_shares_gram_and_matches_direct_inputs(gram_products):
    """q/k/v read one tensor and gate/up another: 4 statistics objects and 4 Grams per window
    (q/k/v, o, gate/up, down), not 7, and each Linear's statistics equal X^T X of what it really saw."""
    model = tiny_model("llama")
    layer = decoder_layers(model)[0]
    linears = prunable_linears(layer)
    seen = {}
    handles = [
        m.register_forward_pre_hook(lambda m, a, n=n: seen.setdefault(n, []).append(a[0].clone()))
        for n, m in linears.items()
    ]
    collector = InputCollector(linears, keep_gram=True)
    inputs = capture_layer_inputs(model, [torch.randint(3, 96, (2, 12)), torch.randint(3, 96, (2, 12))])
    with torch.no_grad():
        for batch in range(2):
            run_layer(layer, inputs.hidden[batch], inputs.kwargs[0][batch])
    collector.remove()
    for h in handles:
        h.remove()
    statistics = collector.statistics
    distinct = {id(stats): stats for stats in statistics.values()}
    assert len(distinct) == 4
    assert statistics["self_attn.q_proj"] is statistics["self_attn.k_proj"] is statistics["self_attn.v_proj"]
    assert statistics["mlp.gate_proj"] is statistics["mlp.up_proj"]
    assert sorted(gram_products.values()) == [4] * 4  # 4 distinct inputs, one product per window each
    assert set(gram_products) == {id(stats.gram) for stats in distinct.values()}
    for name, stats in statistics.items():
        X = torch.cat([x.reshape(-1, x.shape[-1]) for x in seen[name]]).double()
        torch.testing.assert_close(stats.gram, X.T @ X, rtol=1e-5, atol=1e-5)
        assert stats.tokens == 48 and stats.samples == 4


def test_input_collector_keeps_statistics_per_distinct_input(gram_products):
    """Two Linears fed two different tensors keep two statistics, even with equal values."""
    first, second = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    collector = InputCollector({"a": first, "b": second}, keep_gram=True)
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        first(x), second(x.clone()), first(x)
    collector.remove()
    a, b = collector.statistics["a"], collector.statistics["b"]
    assert a is not b and gram_products[id(a.gram)] == 4 and gram_products[id(b.gram)] == 2
    torch.testing.assert_close(a.gram, 2 * (gram(x[0]) + gram(x[1])).double())


def test_input_collector_refuses_sharing_that_changes_between_batches():
    first, second = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    collector = InputCollector({"a": first, "b": second}, keep_gram=False)
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        first(x), second(x)  # batch 1: shared
        assert collector.statistics["a"] is collector.statistics["b"]
        first(x.clone())
        with pytest.raises(RuntimeError, match="shared an input in one batch and not in another"):
            second(x.clone())


def _statistics_and_calls(layer, linears, members, inputs, stop_early):
    """Statistics of `members` from one run of the layer, and the names of the Linears that were called."""
    called = []
    # Registered first, so that it also sees the call whose input ends the run (the stop is raised
    # by the collector's own hook, which records before it stops).
    handles = [m.register_forward_pre_hook(lambda _m, _a, n=n: called.append(n)) for n, m in linears.items()]
    collector = InputCollector(members, keep_gram=True)
    with torch.no_grad():
        if stop_early:
            collector.run(layer, *inputs)
        else:
            run_layer(layer, *inputs)
    collector.remove()
    for handle in handles:
        handle.remove()
    return collector.statistics, called


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_stopping_after_the_last_input_records_what_a_full_run_records(arch):
    """Each group's statistics from a layer run only as far as the group's inputs equal a full run's,
    and the Linears after the group (and the layer's output) are not computed."""
    model = tiny_model(arch)
    layer = decoder_layers(model)[0]
    linears = prunable_linears(layer)
    captured = capture_layer_inputs(model, [torch.randint(3, 96, (2, 12))])
    inputs = (captured.hidden[0], captured.kwargs[0][0])
    for group in [list(linears), *sequential_groups(linears, True)]:
        members = {name: linears[name] for name in group}
        full, full_calls = _statistics_and_calls(layer, linears, members, inputs, stop_early=False)
        early, called = _statistics_and_calls(layer, linears, members, inputs, stop_early=True)
        for name in group:
            torch.testing.assert_close(early[name].gram, full[name].gram, rtol=0, atol=0)
            assert early[name].tokens == full[name].tokens
        assert set(group) <= set(called)
        assert called == full_calls[: len(called)]
        assert called[-1] in group  # nothing ran after the group's last Linear was reached


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_head_logits_reproduce_the_models_logits(arch):
    """Body once, LM head by hand (with Cohere's logit scale, Gemma's soft-capping) == the model's logits;
    and the fused NLL on the head's parts equals the NLL of the full logits."""
    from lp_prune.metrics.language_modeling import fused_token_nll, token_nll
    from lp_prune.models.layers import final_hidden_states, head_logits, linear_head

    model = tiny_model(arch)
    if arch == "gemma3":
        model.config.final_logit_softcapping = 3.0  # small enough to matter for random weights
    ids = torch.randint(3, 96, (3, 10))
    with torch.no_grad():
        own = model(input_ids=ids, use_cache=False).logits
        hidden = final_hidden_states(model, ids)
        torch.testing.assert_close(head_logits(model, hidden), own, rtol=1e-5, atol=1e-5)
        full, tokens = token_nll(own, ids)
        parts = linear_head(model)
        assert parts is not None
        chunked, chunked_tokens = fused_token_nll(hidden, ids, *parts, position_chunk=7, vocab_chunk=10)
    assert chunked_tokens == tokens == 27
    assert float(chunked) == pytest.approx(float(full), rel=1e-5)


class QuantLinear(torch.nn.Linear):
    """A Linear subclass, as quantization libraries make them."""


@pytest.mark.parametrize(
    ("pattern", "named"),
    [
        ("Linear", True),  # a class, its subclasses too
        ("QuantLinear", True),
        ("down_proj", True),  # the last part of the name
        ("mlp.down_proj", True),  # its last parts
        ("model.layers.3.mlp.down_proj", True),  # the whole name
        ("own_proj", False),  # a suffix only at a dot
        ("mlp", False),  # a parent module names none of its Linears
        ("re:.*down_proj", True),  # a regular expression, from the start of the full name
        ("re:down_proj", False),
        ("re:model\\.layers\\.[0-3]\\.", True),
        ("re:.*layers\\.1\\.", False),
    ],
)
def test_module_patterns_read_as_llm_compressor_reads_them(pattern, named):
    assert matches(pattern, "model.layers.3.mlp.down_proj", QuantLinear(2, 2)) is named


def test_linear_targets_pick_the_pruned_linears_of_a_layer():
    model = tiny_model("llama")
    layer = decoder_layers(model)[1]
    assert LinearTargets().of_layer(layer, "model.layers.1") == prunable_linears(layer)
    attention = LinearTargets(("re:.*self_attn",), ("o_proj",)).of_layer(layer, "model.layers.1")
    assert list(attention) == ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]
    assert LinearTargets(ignore=("re:model\\.layers\\.1\\.",)).of_layer(layer, "model.layers.1") == {}
