"""Multiple-choice scoring with shared contexts: the packed rows' structure, and the same scores as
lm-eval's own HFLM (one row per request) on tiny models."""

import logging

import pytest
import torch

from lp_prune.evaluation.shared_context import ChoiceItem, PackedBatch, batches, pack
from tiny_models import tiny_model


def test_packed_row_layout_and_visibility():
    """Context (5, 6, 7), choices (8, 9) and (10, 11, 12): every token sees what it sees in its own row."""
    batch = pack([ChoiceItem((5, 6, 7), ((8, 9), (10, 11, 12)), (4, 2))], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 10, 11]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 3, 4]]
    # Visible keys per query, written out by hand: the context causally, a choice's own tokens.
    expected = [
        {0},
        {0, 1},
        {0, 1, 2},
        {0, 1, 2, 3},  # 8 sees the context and itself
        {0, 1, 2, 4},  # 10 sees the context and itself, not 8
        {0, 1, 2, 4, 5},  # 11 sees the context, 10 and itself
    ]
    allowed = batch.allowed()[0]
    assert [set(torch.nonzero(row).flatten().tolist()) for row in allowed] == expected
    # 8 after position 2 (the context's end), 9 after 8; 10 after 2, 11 after 10, 12 after 11.
    assert batch.score_positions.tolist() == [2, 3, 2, 4, 5]
    assert batch.targets.tolist() == [8, 9, 10, 11, 12]
    assert batch.target_request.tolist() == [0, 0, 1, 1, 1]
    assert batch.requests == (4, 2)


def test_padding_is_invisible_and_the_mask_finite():
    batch = pack([ChoiceItem((1, 2, 3, 4), ((5, 6, 7),), (0,)), ChoiceItem((1,), ((2,), (3,)), (1, 2))], pad_id=99)
    assert batch.input_ids[1].tolist() == [1, 99, 99, 99, 99, 99]
    allowed = batch.allowed()
    assert not allowed[1, 0, 1:].any()  # the real token sees no padding
    mask = batch.additive_mask(torch.float32)
    assert mask.shape == (2, 1, 6, 6) and torch.isfinite(mask).all()
    assert (mask[allowed[:, None]] == 0).all() and (mask[~allowed[:, None]] < -1e30).all()
    assert batch.score_rows.tolist() == [0, 0, 0, 1, 1] and batch.score_positions.tolist() == [3, 4, 5, 0, 0]


def test_batches_keep_to_the_token_budget():
    items = [ChoiceItem(tuple(range(n)), ((1, 2),), (n,)) for n in (3, 9, 5, 4, 8)]
    grouped = batches(items, max_tokens=20)
    assert [[item.row_length for item in batch] for batch in grouped] == [[10, 9], [6, 5, 4]]
    assert batches(items[:1], max_tokens=1) == [[items[0]]]  # one item wider than the budget still runs


def _requests(tokenizer, n_items=4):
    from lp_prune.evaluation.proxy_tasks import language_items

    requests = []
    short = sorted(language_items("en", 0.2), key=lambda item: len(item.context) + max(map(len, item.choices)))
    for item in short[:n_items]:  # the tiny models see 128 positions (characters here)
        context = tokenizer(item.context, add_special_tokens=False)["input_ids"]
        for choice in item.choices:
            continuation = tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
            requests.append(((item.context, " " + choice), context, continuation))
    requests += [
        (("ab", "c"), [40, 41], [42]),  # one-token continuations sharing a context
        (("ab", "d"), [40, 41], [43]),
        (None, [1], [43, 44, 45]),  # a rolling window: no cache key
        (("long", "x"), [50 + i % 40 for i in range(140)], [44, 45]),  # truncated by HFLM: one row of its own
    ]
    return requests


def _compare_with_hflm(model, tokenizer, monkeypatch):
    from lm_eval.models.huggingface import HFLM

    from lp_prune.evaluation import focused_lm
    from lp_prune.evaluation.focused_lm import FocusedHFLM

    requests = _requests(tokenizer)
    expected = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)._loglikelihood_tokens(requests)
    calls = {"packed": 0, "single": 0}
    packed_scores, single_scores = FocusedHFLM._packed_scores, FocusedHFLM._score

    def count_packed(self, batch):
        calls["packed"] += len(batch.requests)
        return packed_scores(self, batch)

    def count_single(self, batch):
        calls["single"] += len(batch)
        return single_scores(self, batch)

    monkeypatch.setattr(focused_lm.FocusedHFLM, "_packed_scores", count_packed)
    monkeypatch.setattr(focused_lm.FocusedHFLM, "_score", count_single)
    got = FocusedHFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)._loglikelihood_tokens(requests)
    assert len(got) == len(expected) == len(requests)
    for (want, want_greedy), (score, greedy) in zip(expected, got, strict=True):
        assert score == pytest.approx(want, rel=1e-5, abs=1e-4) and greedy == want_greedy
    return calls, len(requests)


@pytest.mark.parametrize(("arch", "attention"), [("llama", "sdpa"), ("llama", "eager"), ("cohere", "sdpa")])
def test_shared_context_scores_equal_lm_eval_hflm(arch, attention, char_tokenizer, monkeypatch):
    model = tiny_model(arch, vocab_size=len(char_tokenizer), attention=attention)
    calls, n = _compare_with_hflm(model, char_tokenizer, monkeypatch)
    # All but the truncated request ran packed; the first item's check scored one item one row each.
    assert calls["packed"] == n - 1
    assert calls["single"] == 1 + 4  # the truncated request, the checked item's four choices


def test_gemma3_packs_within_its_sliding_window_and_falls_back_beyond(char_tokenizer, monkeypatch):
    model = tiny_model("gemma3", vocab_size=len(char_tokenizer), attention="sdpa")
    model.config.final_logit_softcapping = 3.0
    model.config.sliding_window = 128  # every request fits: packed
    calls, n = _compare_with_hflm(model, char_tokenizer, monkeypatch)
    assert calls["packed"] == n - 1
    narrow = tiny_model("gemma3", vocab_size=len(char_tokenizer), attention="sdpa")  # its window: 6 positions
    narrow.config.final_logit_softcapping = 3.0
    calls, n = _compare_with_hflm(narrow, char_tokenizer, monkeypatch)
    assert calls["packed"] == 3  # the one-token pair (2 positions) and the rolling window (3); the rest one row each
    assert calls["single"] >= n - 3


def test_a_model_that_ignores_the_packed_mask_falls_back(char_tokenizer, monkeypatch, caplog):
    """Planted fault: the packed rows' mask lets every token see everything. The first item's check
    catches it, and every score is HFLM's again."""
    monkeypatch.setattr(
        PackedBatch,
        "allowed",
        lambda self: torch.ones(self.input_ids.shape[0], *2 * self.input_ids.shape[1:], dtype=torch.bool),
    )
    model = tiny_model("llama", vocab_size=len(char_tokenizer), attention="sdpa")
    with caplog.at_level(logging.WARNING, logger="lp_prune.evaluation.focused_lm"):
        calls, n = _compare_with_hflm(model, char_tokenizer, monkeypatch)
    assert "disagree" in caplog.text
    assert calls["packed"] == n - 1  # the first batch was packed, then scored again one row each


def test_flash_style_attention_is_not_packed(char_tokenizer, monkeypatch):
    """A kernel that takes no custom mask: every request one row each."""
    model = tiny_model("llama", vocab_size=len(char_tokenizer), attention="sdpa")
    model.config._attn_implementation = "flash_attention_2"
    from lp_prune.evaluation.focused_lm import FocusedHFLM

    lm = FocusedHFLM(pretrained=model, tokenizer=char_tokenizer, batch_size=4)
    packed, single = lm._split_packable(_requests(char_tokenizer))
    assert packed == [] and len(single) == len(_requests(char_tokenizer))


def test_packing_computes_each_context_once(char_tokenizer):
    """The body sees every context token once per item, not once per choice."""
    from lp_prune.evaluation.focused_lm import FocusedHFLM

    model = tiny_model("llama", vocab_size=len(char_tokenizer), attention="sdpa")
    requests = _requests(char_tokenizer)[:16]  # four items of four choices
    lm = FocusedHFLM(pretrained=model, tokenizer=char_tokenizer, batch_size=4)
    lm._packing_checked = True  # count the packed work alone
    seen = []
    handle = model.model.embed_tokens.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    try:
        lm._loglikelihood_tokens(requests)
    finally:
        handle.remove()
    real_tokens = sum(int((ids != lm._pad_id()).sum()) for ids in seen)
    contexts = {tuple(context) for _, context, _ in requests}
    expected = sum(len(c) for c in contexts) + sum(len(cont) - 1 for _, _, cont in requests)
    assert real_tokens == expected
    assert expected < sum(len(c) + len(cont) - 1 for _, c, cont in requests)
