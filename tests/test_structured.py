"""Structured pruning: Wanda's score summed over whole FFN channels and attention heads, and the
physically smaller model it saves (equal outputs to the masked model, loadable with from_pretrained)."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

import lp_prune
from lp_prune.analysis.iou import chance_iou, mask_iou
from lp_prune.cli import main
from lp_prune.models.shrink import kept_structures, shrink
from lp_prune.pruning.wanda_sp import channel_scores, head_scores, heads_to_remove
from test_gptq import SMALL


def test_channel_and_head_scores_are_wandas_score_summed_over_the_structure():
    generator = torch.Generator().manual_seed(0)
    weight, norms = torch.randn(5, 12, generator=generator), torch.rand(12, generator=generator) * 4
    expected = [sum(abs(float(weight[i, j])) * float(norms[j]) ** 0.5 for i in range(5)) for j in range(12)]
    assert channel_scores(weight, norms).tolist() == pytest.approx(expected, rel=1e-6)
    by_head = head_scores(weight, norms, head_dim=3)
    assert by_head.tolist() == pytest.approx([sum(expected[3 * h : 3 * h + 3]) for h in range(4)], rel=1e-6)


def test_every_key_value_group_loses_the_same_number_of_its_lowest_heads():
    scores = torch.tensor([4.0, 1.0, 3.0, 2.0, 9.0, 6.0, 5.0, 8.0])  # 8 query heads, 2 key/value groups
    removed = heads_to_remove(scores, kv_heads=2, sparsity=0.5)  # not the 4 lowest overall (all in group 0)
    assert removed.tolist() == [False, True, False, True, False, True, True, False]


def masked_dense_logits(model_dir, run_dir, ids):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in lp_prune.load_masks(run_dir).items():
            modules[name].weight.masked_fill_(mask, 0.0)
        return model(ids).logits


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_the_saved_smaller_model_loads_and_computes_what_the_masked_model_does(arch, tmp_path):
    from conftest import save_tiny_model

    model_dir = save_tiny_model(tmp_path / f"tiny-{arch}", arch)
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(model_dir), "--out", str(out), "--prune.method", "wanda_sp"]
    assert main([*argv, "--prune.sparsity", "0.5", "--save_model", "true", *SMALL]) == 0
    saved = json.loads((out / "model" / "config.json").read_text())
    assert not (out / "model-compressed").exists()  # the cut model is dense: nothing to compress
    assert saved["intermediate_size"] == 32 and saved["num_attention_heads"] == 2  # of 64 and 4 (2 kv groups)
    smaller = AutoModelForCausalLM.from_pretrained(out / "model")
    dense = AutoModelForCausalLM.from_pretrained(model_dir)
    assert sum(p.numel() for p in smaller.parameters()) < sum(p.numel() for p in dense.parameters())
    ids = torch.randint(3, 90, (2, 24), generator=torch.Generator().manual_seed(1))
    expected = masked_dense_logits(model_dir, out, ids)
    # The model cut in memory (what was saved) and the one loaded back compute what the masked one does.
    cut = AutoModelForCausalLM.from_pretrained(model_dir)
    masks = lp_prune.load_masks(out)
    shrink(cut, kept_structures(cut, masks))
    with torch.no_grad():
        for model in (smaller, cut):
            assert (model(ids).logits - expected).abs().max() < 1e-5


def test_masks_are_whole_channels_and_heads_and_their_iou_is_the_sets_iou(tiny_model_dir, tmp_path):
    masks = {}
    for lang in ("en", "sw"):
        out = tmp_path / lang
        argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), "--prune.method", "wanda_sp"]
        assert main([*argv, "--data.calibration_language", lang, "--prune.sparsity", "0.25", *SMALL]) == 0
        masks[lang] = lp_prune.load_masks(out)
    for name, mask in masks["en"].items():
        if name.endswith(("down_proj", "o_proj")):
            columns = mask.all(dim=0)
            assert torch.equal(mask, columns.expand_as(mask)), name  # whole columns
            assert int(columns.sum()) == round(mask.shape[1] * 0.25) if name.endswith("down_proj") else True
            if name.endswith("o_proj"):
                assert torch.equal(columns.reshape(4, 8).all(1), columns.reshape(4, 8).any(1))  # whole heads
            sets = [set(torch.nonzero(masks[lang][name].all(dim=0)).flatten().tolist()) for lang in ("en", "sw")]
            union = sets[0] | sets[1]
            expected = len(sets[0] & sets[1]) / len(union) if union else 1.0  # 0.25 of 2 heads a group: none
            assert mask_iou(mask, masks["sw"][name]) == pytest.approx(expected)
        else:
            assert not mask.any(), name  # q/k/v and gate/up rows go when the model is cut, not in the mask


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prune.sparsity", "0.75"], "would remove all 2 query head(s) of a key/value group"),
        (["--prune.pattern", "2:4"], "removes whole channels and heads"),
    ],
)
def test_bad_structured_settings_are_one_line(tiny_model_dir, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), "--prune.method", "wanda_sp"]
    assert main([*argv, *flags, *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


def test_the_projection_ranking_of_mask_consistency_does_not_apply_to_structured_runs(tiny_model_dir, tmp_path):
    root = tmp_path / "runs"
    for lang in ("en", "sw"):
        argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(root / lang), "--prune.method", "wanda_sp"]
        assert main([*argv, "--data.calibration_language", lang, *SMALL]) == 0
    out = tmp_path / "report"
    assert main(["compare", str(root), "--out", str(out), "--no_wandb"]) == 0
    report = json.loads((out / "tables.json").read_text())
    (setting,) = report["findings"]
    assert setting.startswith("wanda_sp structured s=")  # whole channels and heads, not the config's pattern
    c4 = next(f for f in report["findings"][setting] if f["claim"] == "C4")
    assert c4["verdict"] == "does not apply" and "whole channels and heads" in c4["evidence"]
    assert set(report["iou"][setting]["projection_layer"]) >= {"down_proj", "o_proj"}
    # chance: independent random masks at the pruned share of the Linears that carry masks (down_proj, o_proj)
    masks = lp_prune.load_masks(root / "en")
    shares = [float(m.float().mean()) for name, m in masks.items() if name.endswith(("down_proj", "o_proj"))]
    share = sum(shares) / len(shares)
    assert report["iou"][setting]["chance"] == pytest.approx(chance_iou(share, share))
    assert not any(m.any() for name, m in masks.items() if not name.endswith(("down_proj", "o_proj")))


def test_analyze_measures_a_structured_run_at_dense_shapes_and_counts_removed_lape_neurons(tiny_model_dir, tmp_path):
    root = tmp_path / "runs"
    for lang in ("en", "sw"):
        argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(root / lang), "--prune.method", "wanda_sp"]
        argv += ["--data.calibration_language", lang, "--save_model", "true", "--eval.perplexity", "false"]
        assert main([*argv, *SMALL]) == 0
    out = tmp_path / "analysis"
    args = ["analyze", str(root), "--out", str(out), "--languages", "[en, sw]", "--no_wandb"]
    assert main([*args, "--windows", "2", "--seqlen", "24", "--batch_size", "1"]) == 0
    result = json.loads((out / "analysis.json").read_text())
    neurons = result["lape"]["neurons"]  # [layer, neuron, languages]
    assert neurons
    for lang in ("en", "sw"):
        masks = lp_prune.load_masks(root / lang)
        removed = [bool(masks[f"model.layers.{layer}.mlp.down_proj"][:, neuron].all()) for layer, neuron, _ in neurons]
        overlap = result["lape"]["runs"][lang]["overlap"]["down_proj"]
        assert overlap["all"] == pytest.approx(sum(removed) / len(removed))  # the share of LAPE neurons removed
        for member in ("en", "sw"):  # each language's neurons, whatever the run calibrated on
            theirs = [r for r, (_, _, langs) in zip(removed, neurons, strict=True) if member in langs]
            share = overlap["languages"][member]["removed"]
            assert share == (pytest.approx(sum(theirs) / len(theirs)) if theirs else None)  # NaN is null in JSON


def test_heads_the_config_cannot_hold_stay_as_zeros_and_the_ffn_is_still_cut(tmp_path, caplog):
    """Gemma-3's config wants hidden_size to be a multiple of the head count: 4 heads minus one do not
    divide 32, so the removed head stays as zeros (same outputs) and only the FFN channels go."""
    from conftest import build_char_tokenizer
    from tiny_models import ARCHITECTURES

    tokenizer = build_char_tokenizer()
    config = ARCHITECTURES["gemma3"]()
    config.num_key_value_heads, config.vocab_size = 1, len(tokenizer)
    torch.manual_seed(0)
    model_dir = tmp_path / "tiny-gemma3-one-kv-head"
    AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(model_dir), "--out", str(out), "--prune.method", "wanda_sp"]
    assert main([*argv, "--prune.sparsity", "0.25", "--save_model", "true", *SMALL]) == 0
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["num_attention_heads"] == 4 and saved["intermediate_size"] == 48  # 64 less a quarter
    assert "heads not cut out" in caplog.text
    ids = torch.randint(3, 90, (2, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(out / "model")(ids).logits
    assert (logits - masked_dense_logits(model_dir, out, ids)).abs().max() < 1e-5
