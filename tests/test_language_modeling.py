"""The fused LM-head cross-entropy against the plain computation on full logits."""

import math

import pytest
import torch
import torch.nn.functional as F

from lp_prune.metrics.language_modeling import fused_token_nll, token_nll


def _plain(hidden, ids, weight, bias=None, cap=None):
    logits = hidden.double() @ weight.double().T
    if bias is not None:
        logits = logits + bias.double()
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return token_nll(logits, ids)


def _softcap(cap):
    return lambda logits: logits.div_(cap).tanh_().mul_(cap)


@pytest.mark.parametrize(
    ("position_chunk", "vocab_chunk"),
    [(1024, 4096), (7, 10), (1, 1), (5, 33), (64, 1000)],
)
def test_fused_nll_equals_the_plain_cross_entropy(position_chunk, vocab_chunk):
    """Chunks that divide nothing evenly (a last short chunk of positions and of vocabulary)."""
    torch.manual_seed(0)
    hidden, weight = torch.randn(3, 17, 24) * 2, torch.randn(1000, 24)
    ids = torch.randint(0, 1000, (3, 17))
    expected, count = _plain(hidden, ids, weight)
    fused, fused_count = fused_token_nll(hidden, ids, weight, position_chunk=position_chunk, vocab_chunk=vocab_chunk)
    assert fused_count == count == 48
    assert fused.dtype == torch.float64
    assert float(fused) == pytest.approx(float(expected), rel=1e-6)


def test_fused_nll_per_token_is_the_target_logsumexp_difference():
    """Each token's NLL (one position per call) equals logsumexp(logits) - logit[target] in float64."""
    torch.manual_seed(1)
    hidden, weight = torch.randn(1, 2, 16), torch.randn(300, 16)
    ids = torch.randint(0, 300, (1, 2))
    logits = hidden[0, 0].double() @ weight.double().T
    expected = float(torch.logsumexp(logits, 0) - logits[ids[0, 1]])
    fused, _ = fused_token_nll(hidden, ids, weight, vocab_chunk=64)
    assert float(fused) == pytest.approx(expected, rel=1e-6)


def test_fused_nll_applies_bias_and_soft_capping():
    torch.manual_seed(2)
    hidden, weight, bias = torch.randn(2, 9, 12) * 3, torch.randn(257, 12), torch.randn(257)
    ids = torch.randint(0, 257, (2, 9))
    expected, _ = _plain(hidden, ids, weight, bias, cap=5.0)
    fused, _ = fused_token_nll(hidden, ids, weight, bias, _softcap(5.0), position_chunk=4, vocab_chunk=50)
    assert float(fused) == pytest.approx(float(expected), rel=1e-6)
    uncapped, _ = fused_token_nll(hidden, ids, weight, bias, position_chunk=4, vocab_chunk=50)
    assert not math.isclose(float(uncapped), float(expected), rel_tol=1e-3)  # the cap is not a no-op here


def test_fused_nll_is_stable_for_large_logits():
    """Logits in the thousands overflow a naive exp; the running maximum keeps the sum finite."""
    torch.manual_seed(3)
    hidden, weight = torch.randn(1, 6, 8) * 300, torch.randn(500, 8)
    ids = torch.randint(0, 500, (1, 6))
    expected = F.cross_entropy((hidden[0, :-1].double() @ weight.double().T), ids[0, 1:], reduction="sum")
    fused, _ = fused_token_nll(hidden, ids, weight, vocab_chunk=37)
    assert math.isfinite(float(fused))
    assert float(fused) == pytest.approx(float(expected), rel=1e-6)


def test_fused_nll_of_a_bfloat16_head_matches_its_float32_logits():
    """A bfloat16 model's logits are rounded to bfloat16 before the float32 cross-entropy, as the model's own."""
    torch.manual_seed(4)
    hidden, weight = torch.randn(2, 8, 16).bfloat16(), torch.randn(200, 16).bfloat16()
    ids = torch.randint(0, 200, (2, 8))
    expected, _ = token_nll((hidden @ weight.T).float(), ids)
    fused, _ = fused_token_nll(hidden, ids, weight, vocab_chunk=64)
    assert float(fused) == pytest.approx(float(expected), rel=1e-5)
