"""The opt-in compressed sparse checkpoint (RUN_DIR/model-compressed with save_compressed: sparse-bitmask)
and the model cards, on tiny random models."""

import json
import re
import shutil

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

import lp_prune
from lp_prune.cli import main
from lp_prune.errors import DataError
from lp_prune.tracking.saved_model import load_weights, save_model_streaming
from lp_prune.tracking.sparse_checkpoint import (
    SPARSE_BITMASK,
    is_two_four,
    load_compressed_model,
    load_decompressed,
    read_sparsity_config,
    save_compressed_streaming,
)
from tiny_models import tiny_model

SMALL = [
    *("--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2"),
    *("--data.eval_windows", "2", "--data.eval_seqlen", "32", "--data.eval_languages", "[en, sw]"),
    *("--save_model", "true", "--save_compressed", "sparse-bitmask"),
]
RUNS = {
    "unstructured": ["--save_shard_size", "100KB"],  # shards: a module's compressed parts may span two files
    "2:4": ["--prune.pattern", "2:4"],
}


@pytest.fixture(scope="module", params=list(RUNS))
def run(request, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sparse-run") / "run"
    assert main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, *RUNS[request.param]]) == 0
    return request.param, out


def stored_weights(folder):
    """The tensors of a compressed folder as they are stored (sparse-bitmask*.safetensors)."""
    return load_weights(folder, SPARSE_BITMASK)


def pruned_weights(out):
    """The dense model/ weights of the pruned Linears, by module name."""
    dense = load_weights(out / "model")
    return {name: dense[f"{name}.weight"] for name in lp_prune.load_masks(out)}


def test_compressed_checkpoint_decompresses_to_the_dense_weights(run):
    _, out = run
    dense = load_weights(out / "model")
    decompressed = load_decompressed(out / "model-compressed")
    assert set(decompressed) == set(dense)
    for name, tensor in dense.items():
        assert decompressed[name].dtype == tensor.dtype and torch.equal(decompressed[name], tensor), name
    stored = stored_weights(out / "model-compressed")  # the pruned Linears are stored compressed, not dense
    for module in lp_prune.load_masks(out):
        assert f"{module}.weight" not in stored and f"{module}.bitmask" in stored
    assert "lm_head.weight" in stored
    compressed_bytes = sum(p.stat().st_size for p in (out / "model-compressed").glob("*.safetensors"))
    dense_bytes = sum(p.stat().st_size for p in (out / "model").glob("*.safetensors"))
    assert compressed_bytes < dense_bytes


def test_compressed_folder_carries_the_sparsity_config(run):
    pattern, out = run
    config = json.loads((out / "model-compressed" / "config.json").read_text())
    block = config["quantization_config"]
    assert block["quant_method"] == "compressed-tensors"
    sparsity = block["sparsity_config"]
    assert sparsity["sparsity_structure"] == pattern
    assert sparsity["format"] == ("sparse-24-bitmask" if pattern == "2:4" else "sparse-bitmask")
    assert sparsity["targets"] == ["Linear"] and sparsity["ignore"] == ["lm_head"]
    weights = pruned_weights(out)
    zeros = sum(int((w == 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
    assert sparsity["global_sparsity"] == pytest.approx(zeros, abs=1e-9)
    summary = json.loads((out / "summary.json").read_text())
    assert sparsity["global_sparsity"] == pytest.approx(summary["sparsity"], abs=1e-6)
    recorded = json.loads((out / "model" / "sparsity_config.json").read_text())
    assert recorded == {**sparsity, "format": "dense"}  # model/: the same record, stored dense


def test_masks_say_what_the_bitmask_keeps(run):
    pattern, out = run
    stored = stored_weights(out / "model-compressed")
    from compressed_tensors.utils import unpack_bitmasks

    for module, pruned in lp_prune.load_masks(out).items():
        kept = unpack_bitmasks(stored[f"{module}.bitmask"], list(pruned.shape))
        if pattern == "unstructured":
            assert torch.equal(kept, ~pruned)  # all kept weights of this tiny random model are nonzero
        else:
            assert (kept.reshape(kept.shape[0], -1, 4).sum(-1) == 2).all() and not (kept & pruned).any()


def test_decompressed_model_gives_the_dense_logits(run):
    _, out = run
    dense = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    model = load_compressed_model(out / "model-compressed")
    ids = torch.arange(3, 19).reshape(2, 8)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, dense(ids).logits)


def test_transformers_refuses_the_bitmask_folder_loudly(run):
    """transformers 5 + compressed-tensors >= 0.15 would read the bitmask layout as a plain model with the
    pruned Linears initialised at random; its weight files carry a name from_pretrained does not look for,
    so it raises instead. The same weights under transformers' own name load silently wrong: the renaming
    is what makes the difference."""
    _, out = run
    with pytest.raises(OSError, match=r"model\.safetensors"):
        AutoModelForCausalLM.from_pretrained(out / "model-compressed")
    assert not list((out / "model-compressed").glob("model*.safetensors*"))


def test_a_bitmask_folder_of_the_older_layout_still_decompresses_and_loads_silently_wrong(run, tmp_path):
    _, out = run
    old = tmp_path / "old"
    shutil.copytree(out / "model-compressed", old)
    for path in old.glob("sparse-bitmask*"):
        path.rename(old / path.name.replace("sparse-bitmask", "model"))
    index = old / "model.safetensors.index.json"
    if index.is_file():
        index.write_text(index.read_text().replace("sparse-bitmask-", "model-"))
    dense = load_weights(out / "model")
    assert all(torch.equal(load_decompressed(old)[name], tensor) for name, tensor in dense.items())
    module = next(iter(lp_prune.load_masks(out)))
    loaded = AutoModelForCausalLM.from_pretrained(old)  # why the files are named otherwise now
    assert not torch.equal(loaded.get_submodule(module).weight, pruned_weights(out)[module])


def card(folder):
    text = (folder / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "no YAML front matter"
    return yaml.safe_load(match.group(1)), text


def table_values(text):
    """{language: {stage: value}} from the card's perplexity table."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    stages = [cell.strip() for cell in lines[0].strip("|").split("|")][1:]
    values = {}
    for line in lines[1:]:
        lang, *cells = [cell.strip() for cell in line.strip("|").split("|")]
        values[lang] = {stage: float(cell) for stage, cell in zip(stages, cells, strict=True)}
    return values


@pytest.mark.parametrize("folder", ["model", "model-compressed"])
def test_model_card_states_the_run(run, folder):
    pattern, out = run
    summary = json.loads((out / "summary.json").read_text())
    front, text = card(out / folder)
    assert front["library_name"] == "transformers"
    assert "sparsegpt" in front["tags"] and "en" in front["language"] and "sw" in front["language"]
    assert "Method: SparseGPT" in text
    assert f"Pattern: {pattern}" in text
    assert f"Measured sparsity: {summary['sparsity']:.4f}" in text
    assert "Language(s): en (4 windows)" in text
    assert "Windows: 4 of 32 tokens" in text
    assert f"lp_prune {lp_prune.__version__}" in text
    values = table_values(text)
    assert set(values) == {"en", "sw"}
    [index] = front["model-index"]  # the pruned model's perplexities, in the Hub's metadata
    listed = {result["dataset"]["config"]: result["metrics"][0]["value"] for result in index["results"]}
    assert listed == pytest.approx(summary["perplexity"]["pruned"], abs=5e-5)
    assert "license" not in front and "base_model" not in front  # a local folder without a card says neither
    for stage, per_language in summary["perplexity"].items():
        for lang, value in per_language.items():
            assert values[lang][stage] == pytest.approx(value, abs=5e-5), (stage, lang)
    if folder == "model-compressed":
        assert "compressed-tensors" in front["tags"] and "load_compressed_model" in text
        assert (out / folder / "tokenizer.json").is_file() or (out / folder / "tokenizer_config.json").is_file()


# --- the format itself, without a run ------------------------------------------------------------


def two_four_model(dtype=torch.float32):
    model = tiny_model("llama").to(dtype)
    targets = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    with torch.no_grad():
        for name in targets:
            groups = model.get_submodule(name).weight.view(-1, 4)
            groups.scatter_(1, groups.abs().argsort(1)[:, :2], 0.0)
    return model, targets


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_trip_in_the_model_dtype(tmp_path, dtype):
    model, targets = two_four_model(dtype)
    for pattern in ("2:4", "unstructured"):
        folder = tmp_path / pattern.replace(":", "of")
        block = save_compressed_streaming(model, folder, targets, pattern)
        assert block["sparsity_config"]["sparsity_structure"] == pattern
        decompressed = load_decompressed(folder)
        state = model.state_dict()
        assert set(decompressed) == set(state)
        for name, tensor in state.items():
            assert decompressed[name].dtype == dtype and torch.equal(decompressed[name], tensor), name


def test_a_two_four_run_whose_weights_are_not_two_four_is_stored_unstructured(tmp_path):
    model, targets = two_four_model()
    with torch.no_grad():
        model.get_submodule(targets[0]).weight.view(-1, 4)[0] = 1.0  # one group with 4 nonzeros
    assert not is_two_four(model.get_submodule(targets[0]).weight)
    block = save_compressed_streaming(model, tmp_path / "c", targets, "2:4")
    assert block["sparsity_config"]["format"] == "sparse-bitmask"
    assert torch.equal(
        load_decompressed(tmp_path / "c")[f"{targets[0]}.weight"], model.get_submodule(targets[0]).weight
    )


def test_damage_is_refused(tmp_path):
    model, targets = two_four_model()
    folder = tmp_path / "c"
    save_compressed_streaming(model, folder, targets, "unstructured")
    save_model_streaming(model, tmp_path / "dense")
    flipped = tmp_path / "flipped"
    shutil.copytree(folder, flipped)
    weights = stored_weights(flipped)
    bitmask = weights[f"{targets[0]}.bitmask"]
    bitmask[0, 0] ^= 1  # one weight more or less than the values say
    from safetensors.torch import save_file

    save_file(weights, flipped / "sparse-bitmask.safetensors")
    with pytest.raises(DataError, match="bitmask keeps"):
        load_decompressed(flipped)
    config = json.loads((folder / "config.json").read_text())
    del config["quantization_config"]["sparsity_config"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="sparsity_config"):
        read_sparsity_config(folder)
    with pytest.raises(DataError, match="sparsity_config"):
        load_decompressed(tmp_path / "dense")


def test_overwrite_removes_the_compressed_folder_and_temporaries_are_cleared(tmp_path):
    from lp_prune.tracking.run_dir import RunDirectory

    run = RunDirectory.create(tmp_path / "run")
    run.compressed_model.mkdir()
    half_written = run.compressed_model / ".model.safetensors.ab12cd34.tmp"
    half_written.write_bytes(b"half")
    assert run.remove_temporaries() == [half_written]
    (run.compressed_model / "model.safetensors").write_bytes(b"old")
    run.mark_complete()
    RunDirectory.create(run.root, overwrite=True)
    assert not run.compressed_model.exists()


def test_card_of_a_hub_model_and_of_a_quantization_run():
    from lp_prune.config import RunConfig
    from lp_prune.model_card import model_card
    from lp_prune.tracking.summary import RunSummary

    common = dict(nsamples=128, seqlen=2048, modules=[], calibration_mix={"de": 64, "sw": 64})
    summary = RunSummary(
        model="meta-llama/Meta-Llama-3-8B", method="wanda", pattern="unstructured", target_sparsity=0.5,
        calibration_language="de:64,sw:64", sparsity=0.5, perplexity={"pruned": {"de": 12.3456789, "sw": None}},
        **common,
    )  # fmt: skip
    front, text = yaml.safe_load(model_card(summary, RunConfig()).split("---")[1]), model_card(summary, RunConfig())
    assert front["base_model"] == "meta-llama/Meta-Llama-3-8B" and front["language"] == ["de", "sw"]
    assert "Language(s): de (64 windows), sw (64 windows)" in text and "| de | 12.3457 |" in text
    assert "| sw | n/a |" in text and "pruned with Wanda" in text
    quantized = RunSummary(
        model="/local/model", method="gptq", pattern="unstructured", target_sparsity=0.0,
        calibration_language="en", **common,
    )  # fmt: skip
    front = yaml.safe_load(model_card(quantized, RunConfig()).split("---")[1])
    assert "base_model" not in front and "quantized" in front["tags"] and "sparse" not in front["tags"]
    structured = RunSummary(
        model="/local/model", method="wanda_sp", pattern="unstructured", target_sparsity=0.2,
        calibration_language="en", **common,
    )  # fmt: skip
    text = model_card(structured, RunConfig())
    front = yaml.safe_load(text.split("---")[1])
    assert "structured-sparsity" in front["tags"] and "unstructured-sparsity" not in front["tags"]
    assert "- Pattern: structured (whole FFN channels and attention heads" in text
    assert "pruned with Wanda-sp (structured)" in text


def test_the_card_names_the_method_as_the_method_declares():
    """Built-in methods by their papers' names; a run's recorded name wins over this machine's registry."""
    from lp_prune.config import RunConfig
    from lp_prune.model_card import model_card
    from lp_prune.pruning.registry import BUILT_IN, capabilities_named
    from lp_prune.tracking.summary import RunSummary

    names = {name: capabilities_named(name).display_name for name in BUILT_IN}
    assert names == {
        "sparsegpt": "SparseGPT",
        "wanda": "Wanda",
        "magnitude": "magnitude",
        "gptq": "GPTQ",
        "rtn": "RTN",
        "sparsegpt_gptq": "SparseGPT + GPTQ (joint)",
        "wanda_sp": "Wanda-sp (structured)",
    }
    recorded = {**capabilities_named("wanda").to_json(), "display_name": "Wanda as it was"}
    summary = RunSummary(
        model="/local/model", method="wanda", method_capabilities=recorded, pattern="unstructured",
        target_sparsity=0.5, calibration_language="en", nsamples=4, seqlen=8, modules=[],
    )  # fmt: skip
    assert "pruned with Wanda as it was" in model_card(summary, RunConfig())
