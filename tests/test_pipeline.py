"""End to end through the CLI on a tiny random-weight model: run directory, masks, offline W&B."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

import lp_prune
from conftest import build_char_tokenizer
from lp_prune.cli import main
from lp_prune.config import DataConfig
from lp_prune.data import PruningDataModule
from wandb_offline import closed_log, find_offline_runs, read_history, read_summary

SMALL = [
    "--data.nsamples",
    "4",
    "--data.seqlen",
    "32",
    "--data.batch_size",
    "2",
    "--data.eval_windows",
    "2",
    "--data.eval_seqlen",
    "32",
    "--data.eval_languages",
    "[en, sw]",
]


def run_cli(tiny_model_dir, out, *extra):
    return main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, *extra])


@pytest.mark.parametrize("method", ["sparsegpt", "wanda", "magnitude"])
def test_run_writes_run_directory(tiny_model_dir, tmp_path, method):
    out = tmp_path / "run"
    assert run_cli(tiny_model_dir, out, "--prune.method", method) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "status").read_text().strip() == "COMPLETE"
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-6)
    assert set(summary["perplexity"]) == {"dense", "pruned"}
    for stage in ("dense", "pruned"):
        assert set(summary["perplexity"][stage]) == {"en", "sw"}
        assert all(math.isfinite(v) for v in summary["perplexity"][stage].values())
    assert len(summary["modules"]) == 3 * 7  # 3 layers x 7 Linears
    record = summary["modules"][0]
    assert {"layer", "module", "sparsity", "error", "rel_error", "snr_db"} <= set(record)
    masks = lp_prune.load_masks(out)
    assert set(masks) == {m["module"] for m in summary["modules"]}
    assert all(mask.dtype == torch.bool for mask in masks.values())
    # The calibration set: its token ids (a data.source tokens file) and where each window came from.
    tokens = torch.load(out / "calibration_tokens.pt", weights_only=True)
    calibration = PruningDataModule(DataConfig(nsamples=4, seqlen=32, eval_windows=0), build_char_tokenizer())
    calibration.setup()
    assert torch.equal(tokens, calibration.calibration.ids)
    record = json.loads((out / "calibration.json").read_text())
    assert record["shape"] == [4, 32] and [w["row"] for w in record["windows"]] == [0, 1, 2, 3]
    assert record["sources"]["en"]["source"] == "packaged"
    assert sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values()) == pytest.approx(0.5)


def test_saved_model_has_zeros_exactly_where_masks_say(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    shards = ["--save_shard_size", "100KB"]  # the tiny model in several files, as a 70B one in 50GB shards
    assert run_cli(tiny_model_dir, out, "--save_model", "true", *shards, "--eval.perplexity", "false") == 0
    assert len(json.loads((out / "model" / "model.safetensors.index.json").read_text())["weight_map"]) > 0
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    weights = dict(model.named_parameters())
    for name, mask in lp_prune.load_masks(out).items():
        weight = weights[f"{name}.weight"]
        assert (weight[mask] == 0).all()
        assert (weight[~mask] != 0).float().mean() > 0.99


def test_offline_wandb_history_has_per_layer_metrics(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert run_cli(tiny_model_dir, out, "--wandb.mode", "offline") == 0
    (run,) = find_offline_runs(out / "wandb")
    history = read_history(closed_log(run))
    layer_rows = [row for row in history if "prune/snr_db/q_proj" in row]
    assert [row["layer"] for row in layer_rows] == [0, 1, 2]
    for row in layer_rows:
        assert row["prune/sparsity/down_proj"] == pytest.approx(0.5)
        assert math.isfinite(row["prune/rel_error/o_proj"])
    summary = read_summary(closed_log(run))
    assert summary["sparsity"] == pytest.approx(0.5)
    assert math.isfinite(summary["ppl/pruned/sw"]) and math.isfinite(summary["ppl/dense/en"])


def test_n_m_run_gives_exact_pattern(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert run_cli(tiny_model_dir, out, "--prune.pattern", "2:4", "--eval.perplexity", "false") == 0
    for mask in lp_prune.load_masks(out).values():
        assert (mask.reshape(mask.shape[0], -1, 4).sum(-1) == 2).all()


def test_true_sequential_prunes_on_pruned_inputs(tiny_model_dir, tmp_path):
    plain, sequential = tmp_path / "plain", tmp_path / "seq"
    assert run_cli(tiny_model_dir, plain, "--eval.perplexity", "false") == 0
    assert run_cli(tiny_model_dir, sequential, "--prune.true_sequential", "true", "--eval.perplexity", "false") == 0
    a, b = lp_prune.load_masks(plain), lp_prune.load_masks(sequential)
    first = "model.layers.0.self_attn.q_proj"  # group 1 of layer 0 sees the same inputs either way
    assert torch.equal(a[first], b[first])
    assert any(not torch.equal(a[n], b[n]) for n in a)


BAD_INPUTS = [
    (
        ["--data.calibration_language", "fr"],
        "data.source packaged has text in ar, de, en, es, ru, sw, zh only, not 'fr'",
    ),
    (["--prune.sparsity", "1.0"], "prune.sparsity must lie in [0, 1)"),
    (["--prune.sparsity", "-0.1"], "prune.sparsity must lie in [0, 1)"),
    (["--prune.pattern", "4:2"], "N:M needs 0 < N < M"),
    (["--prune.pattern", "2-4"], "neither 'unstructured' nor N:M"),
    (["--prune.method", "obs"], "prune.method 'obs' is not one of"),
    (["--data.nsamples", "100000"], "windows of 32 tokens; asked for 100000"),
    (["--data.seqlen", "4096"], "exceeds the model's context of 128 tokens"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_gets_one_line_and_exit_code(tiny_model_dir, tmp_path, capsys, args, message):
    assert run_cli(tiny_model_dir, tmp_path / "run", *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("lp-prune: error:")


def test_missing_model_folder_and_offline_hub(tmp_path, capsys):
    assert main(["run", "--model.name", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["run", "--model.name", "someone/not-a-model", "--out", str(tmp_path / "r")]) == 2
    assert "Hugging Face Hub is unreachable" in capsys.readouterr().err
