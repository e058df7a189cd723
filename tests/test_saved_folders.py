"""Every model folder a run writes, read by transformers' AutoModelForCausalLM as lm_eval and users read
it: it gives model/'s logits, or loading fails with an exception. Never random weights in silence."""

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

import lp_prune
from lp_prune.cli import main
from lp_prune.config import RunConfig
from lp_prune.errors import ConfigError
from lp_prune.tracking.saved_model import save_model_streaming
from lp_prune.tracking.sparsity_config import follows_pattern, record_dense_sparsity, sparsity_structure
from tiny_models import tiny_model

SMALL = [
    *("--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2"),
    *("--data.eval_windows", "2", "--data.eval_seqlen", "32", "--data.eval_languages", "[en]"),
    *("--save_model", "true", "--wandb.mode", "disabled"),
]
RUNS = {  # name: (options, the folders the run writes)
    "sparsegpt default": ([], {"model"}),
    "wanda 2:4 bitmask": (
        ["--prune.method", "wanda", "--prune.pattern", "2:4", "--save_compressed", "sparse-bitmask"],
        {"model", "model-compressed"},
    ),
    "rtn symmetric 8-bit": (
        ["--prune.method", "rtn", "--prune.bits", "8", "--prune.symmetric", "true"],
        {"model", "model-compressed"},
    ),
    "sparsegpt_gptq asymmetric": (
        ["--prune.method", "sparsegpt_gptq", "--prune.group_size", "16", "--save_shard_size", "100KB"],
        {"model", "model-compressed"},
    ),
    "wanda_sp structured": (["--prune.method", "wanda_sp", "--prune.sparsity", "0.25"], {"model"}),
}
IDS = torch.arange(3, 19).reshape(2, 8)


@pytest.fixture(scope="module", params=list(RUNS))
def run(request, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("saved-folders") / "run"
    options, _ = RUNS[request.param]
    assert main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, *options]) == 0
    return request.param, out


def logits(folder):
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(IDS).logits


def plain_copy(folder, target):
    """`folder` with config.json's quantization_config removed: the checkpoint as it was before the record."""
    shutil.copytree(folder, target)
    config = json.loads((target / "config.json").read_text())
    config.pop("quantization_config", None)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_every_folder_gives_the_dense_logits_or_fails_loudly(run, tmp_path):
    name, out = run
    folders = {path.name for path in out.iterdir() if (path / "config.json").is_file()}
    assert folders == RUNS[name][1]
    expected = logits(plain_copy(out / "model", tmp_path / "plain"))
    outcomes = {}
    for folder in sorted(folders):
        try:
            got = logits(out / folder)
        except Exception as error:  # any exception is a loud refusal
            outcomes[folder] = type(error).__name__
            continue
        assert torch.equal(got, expected), f"{folder} loads with other weights than model/"
        outcomes[folder] = "same logits"
    assert outcomes["model"] == "same logits"
    if name == "wanda 2:4 bitmask":
        assert outcomes["model-compressed"] == "OSError"  # its weight files carry another name
    if name == "sparsegpt_gptq asymmetric":
        assert outcomes["model-compressed"] == "RuntimeError"  # the packed zero points' size mismatch
    if name == "rtn symmetric 8-bit":
        assert outcomes["model-compressed"] == "same logits"


def test_model_folder_records_the_sparsity_as_compressed_tensors_dense_format(run):
    from compressed_tensors.config import DenseSparsityConfig, SparsityCompressionConfig

    name, out = run
    config = json.loads((out / "model" / "config.json").read_text())
    assert "quantization_config" not in config  # model/ loads as a plain model, never through a quantizer
    record = out / "model" / "sparsity_config.json"
    if name.startswith(("rtn", "wanda_sp")):  # nothing zeroed, or the cut model is smaller and dense
        assert not record.exists()
        return
    sparsity = json.loads(record.read_text())
    parsed = SparsityCompressionConfig.load_from_registry(sparsity["format"], **sparsity)
    assert isinstance(parsed, DenseSparsityConfig) and sparsity["format"] == "dense"
    assert sparsity["sparsity_structure"] == ("2:4" if "2:4" in name else "unstructured")
    assert sparsity["targets"] == ["Linear"] and sparsity["ignore"] == ["lm_head"]
    summary = json.loads((out / "summary.json").read_text())
    assert sparsity["global_sparsity"] == pytest.approx(summary["sparsity"], abs=1e-6)
    assert set(lp_prune.load_masks(out))  # the targets are the masked Linears
    card = (out / "model" / "README.md").read_text()
    assert "format `dense`" in card and "compressed-tensors" in card
    loaded = AutoModelForCausalLM.from_pretrained(out / "model")
    assert getattr(loaded, "hf_quantizer", None) is None and loaded.half().dtype == torch.float16  # a plain model


def test_a_loaded_model_saved_again_drops_the_record(tmp_path):
    """A pruned folder loaded with its record (transformers attaches a compressed-tensors quantizer) and
    saved again: the written config keeps no stale quantization_config for the run to replace."""
    model = tiny_model()
    targets = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"]
    with torch.no_grad():
        for target in targets:
            model.get_submodule(target).weight[:, ::2] = 0.0
    save_model_streaming(model, tmp_path / "first")
    record_dense_sparsity(model, tmp_path / "first", targets, "unstructured")
    # an input folder another tool saved with the record in config.json (as compressed-tensors reads it)
    config_path = tmp_path / "first" / "config.json"
    block = {"quant_method": "compressed-tensors", "sparsity_config": {"format": "dense"}}
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "quantization_config": block}))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "first")
    assert loaded.hf_quantizer is not None
    save_model_streaming(loaded, tmp_path / "again")
    assert "quantization_config" not in json.loads((tmp_path / "again" / "config.json").read_text())


def test_structure_names_follow_compressed_tensors():
    weight = torch.tensor([[0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 0.0, 4.0]])
    assert follows_pattern(weight, "2:4") and follows_pattern(weight, "1:4") and not follows_pattern(weight, "3:4")
    assert sparsity_structure([weight], "2:4") == "2:4"
    assert sparsity_structure([weight], "1:4") == "3:4"  # lp_prune prunes N of M; compressed-tensors keeps K of M
    assert sparsity_structure([weight], "4:8") == "4:8"
    assert sparsity_structure([weight, torch.ones(1, 8)], "2:4") == "unstructured"
    assert sparsity_structure([weight], "unstructured") == "unstructured"


def test_save_compressed_takes_true_false_or_sparse_bitmask():
    for value in (True, False, "sparse-bitmask"):
        RunConfig(save_compressed=value).validate()
    with pytest.raises(ConfigError, match="save_compressed"):
        RunConfig(save_compressed="bitmask").validate()
