"""The Python API: lp_prune.prune on a model in memory, lp_prune.run for the whole job."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import lp_prune
from lp_prune.calibration.loop import PruningLoop
from lp_prune.config import RunConfig
from lp_prune.errors import ConfigError
from lp_prune.pruning.registry import BUILT_IN
from test_pipeline import SMALL, run_cli

QUICK = ("--eval.perplexity", "false", "--checkpoint", "false", "--wandb.mode", "disabled")


def pipeline_loop(monkeypatch, tiny_model_dir, out, *flags):
    """Run `lp-prune run` in-process; what its pruning loop gave: windows, weights after pruning, masks, OWL."""
    seen = {}
    run = PruningLoop.run

    def spy(loop, *args, **kwargs):
        recorder = run(loop, *args, **kwargs)
        seen["ids"] = loop.ids.clone()
        seen["state"] = {name: tensor.clone() for name, tensor in loop.model.state_dict().items()}
        seen["masks"] = {name: mask.unpack() for name, mask in recorder.masks.items()}
        seen["owl"] = loop.owl
        return recorder

    with monkeypatch.context() as patch:
        patch.setattr(PruningLoop, "run", spy)
        assert run_cli(tiny_model_dir, out, *QUICK, *flags) == 0
    return seen


def assert_same_pruning(model, result, seen):
    assert result.masks.keys() == seen["masks"].keys()
    for name, mask in seen["masks"].items():
        assert torch.equal(result.masks[name], mask), name
    state = model.state_dict()
    assert state.keys() == seen["state"].keys()
    for name, tensor in seen["state"].items():
        assert torch.equal(state[name], tensor), name


def pruned_weights_differ(model, other):
    theirs = other.state_dict()
    return any(not torch.equal(tensor, theirs[name]) for name, tensor in model.state_dict().items())


@pytest.mark.parametrize("method", BUILT_IN)
def test_prune_equals_the_pipelines_loop(monkeypatch, tiny_model_dir, tmp_path, method):
    """Every built-in method through lp_prune.prune: the masks and weights `lp-prune run` gives for
    the same config and windows."""
    seen = pipeline_loop(monkeypatch, tiny_model_dir, tmp_path / "cli", "--prune.method", method)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    result = lp_prune.prune(model, seen["ids"], method=method, sparsity=0.5, batch_size=2)
    assert_same_pruning(model, result, seen)
    assert len(result.records) == len(seen["masks"]) == 3 * 7


STATISTICS = {
    "balanced": ({"statistics": "balanced"}, ["--prune.statistics", "balanced"]),
    "weighted": (
        {"statistics": "weighted", "language_weights": {"en": 0.2, "sw": 0.8}},
        ["--prune.statistics", "weighted", "--prune.language_weights", "{en: 0.2, sw: 0.8}"],
    ),
}


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
@pytest.mark.parametrize("rule", list(STATISTICS))
def test_language_statistics_reach_prune(monkeypatch, tiny_model_dir, tmp_path, rule, method):
    """prune.statistics balanced / weighted through lp_prune.prune: not the pooled result, the pipeline's."""
    options, flags = STATISTICS[rule]
    mix = dict(calibration="en:3,sw:1", nsamples=4, seqlen=32, batch_size=2)
    cli = ["--prune.method", method, "--data.calibration_language", "en:3,sw:1", *flags]
    seen = pipeline_loop(monkeypatch, tiny_model_dir, tmp_path / "cli", *cli)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    result = lp_prune.prune(model, tokenizer, method=method, **mix, **options)
    assert_same_pruning(model, result, seen)
    by_ids = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lp_prune.prune(by_ids, seen["ids"], method=method, batch_size=2, languages=["en", "en", "en", "sw"], **options)
    assert not pruned_weights_differ(model, by_ids)
    pooled = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lp_prune.prune(pooled, tokenizer, method=method, **mix)
    assert pruned_weights_differ(model, pooled)


def test_language_statistics_need_each_windows_language(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.randint(3, 60, (4, 16))
    with pytest.raises(ConfigError, match="4 windows but 0 languages"):
        lp_prune.prune(model, ids, method="wanda", statistics="balanced")
    with pytest.raises(ConfigError, match="no weight for calibration language sw"):
        lp_prune.prune(
            model, ids, method="wanda", statistics="weighted", language_weights={"en": 1.0}, languages=["en", "sw"] * 2
        )


def test_prune_runs_owls_scan_as_the_pipeline_does(monkeypatch, tiny_model_dir, tmp_path):
    seen = pipeline_loop(
        monkeypatch, tiny_model_dir, tmp_path / "cli", "--prune.method", "wanda", "--prune.owl", "true"
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    result = lp_prune.prune(model, seen["ids"], method="wanda", batch_size=2, owl=True)
    assert_same_pruning(model, result, seen)
    assert result.owl == seen["owl"] and len(result.owl["sparsity"]) == 3


def test_one_loop_serves_the_cli_and_the_api(monkeypatch, tiny_model_dir, tmp_path):
    """`lp-prune run` and lp_prune.prune both build their loop with PruningLoop.from_config, from equal
    prune settings for equal options."""
    built = []
    from_config = PruningLoop.from_config.__func__

    def spy(cls, config, *args, **kwargs):
        built.append(config)
        return from_config(cls, config, *args, **kwargs)

    monkeypatch.setattr(PruningLoop, "from_config", classmethod(spy))
    assert run_cli(tiny_model_dir, tmp_path / "cli", *QUICK, "--prune.method", "wanda_sp") == 0
    assert len(built) == 1
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lp_prune.prune(model, torch.load(tmp_path / "cli" / "calibration_tokens.pt"), method="wanda_sp", batch_size=2)
    assert len(built) == 2
    cli, api = built
    assert api.prune == cli.prune
    assert (api.data.batch_size, api.activations, api.offload_layers) == (
        cli.data.batch_size,
        cli.activations,
        cli.offload_layers,
    )


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_prune_in_memory_gives_the_clis_masks(tiny_model_dir, tmp_path, method):
    """Same model, same calibration windows (the CLI's saved token file): same masks and weights."""
    assert run_cli(tiny_model_dir, tmp_path / "cli", "--prune.method", method, "--save_model", "true") == 0
    ids = torch.load(tmp_path / "cli" / "calibration_tokens.pt")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    result = lp_prune.prune(model, ids, method=method, sparsity=0.5, batch_size=2)
    saved = lp_prune.load_masks(tmp_path / "cli")
    assert result.masks.keys() == saved.keys()
    assert all(torch.equal(result.masks[name], saved[name]) for name in saved)
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "cli" / "model")
    for (name, mine), theirs in zip(model.state_dict().items(), pruned.state_dict().values(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0, msg=name)  # pruned in place, as the CLI's
    assert result.sparsity == pytest.approx(0.5, abs=0.01)
    assert [r.module for r in result.records] == list(saved)


def test_prune_cuts_packaged_text_with_the_tokenizer(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    result = lp_prune.prune(model, tokenizer, method="wanda", calibration="en+sw", nsamples=4, seqlen=32)
    assert len(result.masks) == 3 * 7 and result.sparsity == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="integers"):
        lp_prune.prune(model, torch.zeros(2, 8), method="wanda")


def test_run_is_the_whole_job(tiny_model_dir, tmp_path):
    config = RunConfig(out=str(tmp_path / "run"))
    config.model.name = str(tiny_model_dir)
    flags = dict(zip(SMALL[::2], SMALL[1::2], strict=True))
    config.data.nsamples, config.data.seqlen = int(flags["--data.nsamples"]), int(flags["--data.seqlen"])
    config.data.eval_windows, config.data.eval_seqlen = 1, 32
    config.data.eval_languages = ["en"]
    config.wandb.mode = "disabled"
    run_dir = lp_prune.run(config)
    assert (run_dir / "status").read_text().strip() == "COMPLETE"
    assert len(lp_prune.load_masks(run_dir)) == 3 * 7
