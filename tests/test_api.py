"""The Python API: lp_prune.prune on a model in memory, lp_prune.run for the whole job."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import lp_prune
from lp_prune.calibration.loop import PruningLoop
from lp_prune.config import RunConfig
from lp_prune.errors import ConfigError, DataError
from lp_prune.pruning.registry import BUILT_IN, capabilities_named
from test_pipeline import SMALL, run_cli
from tiny_models import tiny_model

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


CALIBRATION_TEXTS = [
    "The quick brown fox jumps over the lazy dog, and the dog sleeps on. " * 2,
    "Habari ya asubuhi, rafiki yangu; leo ni siku nzuri ya kusoma. " * 2,
]


def linear_weights(model) -> dict[str, torch.Tensor]:
    return {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


@pytest.mark.parametrize("method", BUILT_IN)
def test_every_built_in_method_prunes_texts_and_leaves_ignored_linears(char_tokenizer, method):
    """Every built-in method through lp_prune.prune on a tiny model and a few texts, down_proj ignored:
    every down_proj weight stays as it was; the other Linears are pruned (50% zeros for the methods that
    prune unstructured), quantized, or, for the structured method, o_proj loses whole heads."""
    model = tiny_model("llama", vocab_size=len(char_tokenizer))
    before = linear_weights(model)
    result = lp_prune.prune(
        model, char_tokenizer, calibration=CALIBRATION_TEXTS, method=method, seqlen=16, ignore=["re:.*down_proj"]
    )
    after = linear_weights(model)
    decoder = {name for name in after if name.startswith("model.layers.")}
    down = {name for name in decoder if name.endswith("down_proj")}
    assert len(down) == 3 and result.masks.keys() == decoder - down
    assert all(torch.equal(after[name], before[name]) for name in down)
    assert torch.equal(after["lm_head"], before["lm_head"])
    others = sorted(decoder - down)
    capabilities = capabilities_named(method)
    if not capabilities.zeroes:  # quantization: every other Linear moved onto its grid
        assert all(not torch.equal(after[name], before[name]) for name in others)
    elif capabilities.structured:
        assert any((after[name] == 0).all(0).any() for name in others if name.endswith("o_proj"))
    else:
        for name in others:
            assert (after[name] == 0).float().mean().item() >= 0.49, name  # quantization may round more to 0


def test_prune_equals_the_pipelines_loop(monkeypatch, tiny_model_dir, tmp_path):
    """lp_prune.prune gives the masks and weights `lp-prune run` gives for the same config and windows."""
    seen = pipeline_loop(monkeypatch, tiny_model_dir, tmp_path / "cli", "--prune.method", "sparsegpt_gptq")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    result = lp_prune.prune(model, seen["ids"], method="sparsegpt_gptq", sparsity=0.5, batch_size=2)
    assert_same_pruning(model, result, seen)
    assert len(result.records) == len(seen["masks"]) == 3 * 7


def test_prune_and_run_honour_targets_and_ignore(monkeypatch, tiny_model_dir, tmp_path):
    """prune.targets and prune.ignore in `lp-prune run` and in lp_prune.prune: the same Linears pruned,
    the same way."""
    flags = ["--prune.method", "wanda", "--prune.targets", "[gate_proj, up_proj, mlp.down_proj]"]
    flags += ["--prune.ignore", "re:.*layers\\.1\\."]
    seen = pipeline_loop(monkeypatch, tiny_model_dir, tmp_path / "cli", *flags)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    result = lp_prune.prune(
        model,
        seen["ids"],
        method="wanda",
        batch_size=2,
        targets=["gate_proj", "up_proj", "mlp.down_proj"],
        ignore="re:.*layers\\.1\\.",
    )
    assert_same_pruning(model, result, seen)
    assert sorted(result.masks) == [
        f"model.layers.{layer}.mlp.{proj}" for layer in (0, 2) for proj in ("down_proj", "gate_proj", "up_proj")
    ]


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
    with pytest.raises(ConfigError, match="integers"):
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


def test_texts_are_packed_as_the_runs_calibration_text(char_tokenizer):
    """Texts become windows of seqlen tokens cut from their token stream (BOS first in each), drawn with
    the seed: the packer of the run's calibration text. A datasets.Dataset's text column gives the same."""
    from datasets import Dataset

    from lp_prune.api import calibration_windows, run_config
    from lp_prune.data.windows import tokenize_stream

    data = run_config("wanda", 0.5, CALIBRATION_TEXTS, None, 16, 0, 2).data
    ids, languages = calibration_windows(CALIBRATION_TEXTS, char_tokenizer, data, 128)
    stream = tokenize_stream(CALIBRATION_TEXTS, char_tokenizer)
    assert languages == [] and ids.shape == (stream.numel() // 15, 16)
    assert (ids[:, 0] == char_tokenizer.bos_token_id).all()
    rows = {tuple(row.tolist()) for row in stream[: len(ids) * 15].view(-1, 15)}
    assert {tuple(row[1:].tolist()) for row in ids} == rows  # every window of the stream, in drawn order
    dataset = Dataset.from_dict({"text": CALIBRATION_TEXTS, "id": [0, 1]})
    assert torch.equal(calibration_windows(dataset, char_tokenizer, data, 128)[0], ids)
    three, _ = calibration_windows(CALIBRATION_TEXTS, char_tokenizer, data, 128, text_windows=3)
    assert len(three) == 3 and {tuple(row[1:].tolist()) for row in three} <= rows


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ([], "calibration holds no texts"),
        (["fine", 3], "item 1 is a int"),
        (42, "calibration is a int; give a language code, a list of texts"),
        (["too short"], "calibration text gives 0 windows of 16 tokens"),
    ],
)
def test_bad_calibration_is_one_line(char_tokenizer, calibration, message):
    model = tiny_model("llama", vocab_size=len(char_tokenizer))
    with pytest.raises((ConfigError, DataError), match=message) as raised:
        lp_prune.prune(model, char_tokenizer, calibration=calibration, seqlen=16)
    assert "\n" not in str(raised.value)


def test_bad_patterns_and_a_selection_of_nothing_are_one_line(char_tokenizer):
    from datasets import Dataset

    model = tiny_model("llama", vocab_size=len(char_tokenizer))
    ids = torch.randint(3, 60, (2, 16))
    with pytest.raises(ConfigError, match=r"prune.ignore 're:\[' is not a regular expression"):
        lp_prune.prune(model, ids, ignore=["re:["])
    with pytest.raises(ConfigError, match=r"prune\.targets is empty"):
        lp_prune.prune(model, ids, targets=[])
    with pytest.raises(ConfigError, match=r"names no Linear of the decoder layers \(layer 0 has self_attn.q_proj"):
        lp_prune.prune(model, ids, targets=["attention"])
    with pytest.raises(ConfigError, match="no 'text' column"):
        lp_prune.prune(model, char_tokenizer, calibration=Dataset.from_dict({"content": ["x"]}))
    with pytest.raises(ConfigError, match="needs the model's tokenizer"):
        lp_prune.prune(model, calibration=["some text"])
    with pytest.raises(ConfigError, match="calibration given twice"):
        lp_prune.prune(model, ids, calibration="sw")


def test_prune_shows_a_bar_over_layers_and_no_lightning_banners(char_tokenizer, capfd):
    model = tiny_model("llama", vocab_size=len(char_tokenizer))
    lp_prune.prune(model, calibration=torch.randint(3, 60, (2, 16)), method="magnitude")
    printed = "".join(capfd.readouterr())
    assert "Layer 3/3" in printed and "3/3 [" in printed  # the bar counts the three decoder layers
    for banner in ("GPU available", "TPU available", "💡 Tip", "LeafSpec"):
        assert banner not in printed
    lp_prune.prune(model, calibration=torch.randint(3, 60, (2, 16)), method="magnitude", progress=False)
    assert "Layer" not in "".join(capfd.readouterr())


def test_load_config_is_what_run_config_builds(monkeypatch, tmp_path):
    """lp_prune.load_config(path) equals the RunConfig `lp-prune run --config path` (and `-c path`) hands to
    the pipeline; a packaged configs/ path works from any folder."""
    from lp_prune.cli import main
    from lp_prune.commands import run as run_command

    path = tmp_path / "job.yaml"
    path.write_text("prune: {method: wanda, ignore: [re:.*down_proj]}\ndata: {calibration_language: sw}\n")
    built = []
    monkeypatch.setattr(
        run_command, "execute", lambda namespace: built.append(run_command.run_config_of(namespace)) or 0
    )
    assert main(["run", "--config", str(path)]) == main(["run", "-c", str(path)]) == 0
    config = lp_prune.load_config(path)
    assert built == [config, config]
    assert (config.prune.method.name, config.prune.ignore, config.data.calibration_language) == (
        "wanda",
        ["re:.*down_proj"],
        "sw",
    )
    monkeypatch.chdir(tmp_path)
    assert lp_prune.load_config("configs/smoke.yaml").data.nsamples >= 1
    path.write_text("prune: {sparsity: lots}\n")
    with pytest.raises(ConfigError, match=r"prune\.sparsity") as raised:
        lp_prune.load_config(path)
    assert "\n" not in str(raised.value)
