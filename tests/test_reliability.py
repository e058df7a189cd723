"""Resume after a real kill, determinism, and what an unfinished run looks like to other tools."""

import os
import signal
import subprocess

import pytest
from safetensors.torch import load_file

import lp_prune
from lp_prune.cli import main
from lp_prune.storage.files import read_json
from stopped_runs import start_held
from wandb_offline import find_offline_runs, read_history, run_file

SMALL = [
    "--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2",
    "--data.eval_windows", "1", "--data.eval_seqlen", "32", "--data.eval_languages", "[en]",
    "--save_model", "true",
]  # fmt: skip
VOLATILE = {"timings_s", "peak_rss_mb", "resumed_from_layer"}


def run_args(model_dir, out, method):
    return ["run", "--model.name", str(model_dir), "--out", str(out), "--prune.method", method, *SMALL]


def stable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def assert_same_run(a, b):
    masks_a, masks_b = lp_prune.load_masks(a), lp_prune.load_masks(b)
    assert masks_a.keys() == masks_b.keys()
    assert all((masks_a[n] == masks_b[n]).all() for n in masks_a)
    weights_a, weights_b = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all((weights_a[n] == weights_b[n]).all() for n in weights_a)  # bit for bit
    assert stable(read_json(a / "summary.json")) == stable(read_json(b / "summary.json"))


@pytest.fixture(scope="module")
def reference_runs(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    for method in ("sparsegpt", "wanda"):
        assert main(run_args(tiny_model_dir, root / method, method)) == 0
    return root


def test_same_seed_gives_identical_runs(tiny_model_dir, reference_runs, tmp_path):
    assert main(run_args(tiny_model_dir, tmp_path / "again", "sparsegpt")) == 0
    assert_same_run(reference_runs / "sparsegpt", tmp_path / "again")
    versions = read_json(tmp_path / "again" / "summary.json")["versions"]
    assert {"torch", "transformers", "lightning", "lp_prune"} <= set(versions)


def start_and_kill_after(layer: int, args: list[str], out, env_extra=None):
    """A real `lp-prune run` process, SIGKILLed once layer `layer` is saved and its W&B row logged."""
    proc = start_held(layer, args, out, env_extra, lambda: logged_layers(out) > layer, subprocess.DEVNULL)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def logged_layers(out) -> int:
    """Layer rows the run's offline W&B log holds so far (W&B writes it from its own process)."""
    runs = find_offline_runs(out / "wandb") if (out / "wandb").exists() else []
    if len(runs) != 1 or not list(runs[0].glob("run-*.wandb")):
        return 0
    return sum("layer" in row for row in read_history(run_file(runs[0])))


# Both methods, and a kill after the first and after a later layer (each case ~20 s of CI).
@pytest.mark.parametrize(("method", "layer"), [("sparsegpt", 0), ("wanda", 1)])
def test_resume_after_kill_matches_uninterrupted_run(tiny_model_dir, reference_runs, tmp_path, capsys, method, layer):
    out = tmp_path / "killed"
    start_and_kill_after(layer, run_args(tiny_model_dir, out, method), out)
    assert (out / "status").read_text().strip() == "RUNNING"
    assert not (out / "summary.json").exists()
    # The killed run's offline W&B log is still readable (so `wandb sync` can upload it).
    (killed_run,) = find_offline_runs(out / "wandb")
    history = read_history(run_file(killed_run))  # a cut-off log reads up to the cut
    assert [row["layer"] for row in history if "layer" in row] == list(range(layer + 1))
    # Unfinished runs are never taken as results.
    assert main(["compare", str(out), "--no_wandb"]) == 2
    assert "not a complete run" in capsys.readouterr().err

    assert main(["run", "--resume", str(out)]) == 0
    assert read_json(out / "summary.json")["resumed_from_layer"] == layer + 1
    assert not (out / "progress").exists()
    assert_same_run(reference_runs / method, out)


@pytest.mark.parametrize(
    ("poison", "message"),
    [
        ("weight", "layer 1, module model.layers.1.mlp.up_proj: the weights hold NaN or inf before pruning"),
        ("input", "layer 0, module model.layers.0.self_attn.q_proj: its calibration inputs hold NaN or inf"),
    ],
)
def test_non_finite_values_stop_the_run_naming_layer_and_module(tmp_path, capsys, poison, message):
    import torch
    from transformers import AutoModelForCausalLM

    from conftest import save_tiny_model

    folder = save_tiny_model(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        if poison == "weight":
            model.model.layers[1].mlp.up_proj.weight[0, 0] = float("nan")
        else:  # NaN embeddings reach every Linear's inputs; embeddings themselves are never pruned
            model.model.embed_tokens.weight.fill_(float("nan"))
    model.save_pretrained(folder)
    args = ["run", "--model.name", str(folder), "--out", str(tmp_path / "run"), *SMALL, "--eval.perplexity", "false"]
    assert main(args) == 2
    assert message in capsys.readouterr().err
