"""Scaling features: data-parallel calibration, layer/activation offload, memory estimate, OWL,
calibration mixes, half precision."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lp_prune
from lp_prune.calibration.activations import ActivationStore
from lp_prune.config import ConfigError, DataConfig, RunConfig, calibration_mix
from lp_prune.data import PruningDataModule
from lp_prune.memory import MemoryEstimate, ModelShape, check_fits, estimate_memory
from lp_prune.models.layers import InputCollector
from lp_prune.pruning import method_named
from lp_prune.pruning.owl import OutlierCount, outlier_ratio, owl_sparsities
from lp_prune.tracking import load_weights
from test_pipeline import SMALL, run_cli

# --- OWL -------------------------------------------------------------------------------------------


def test_owl_sparsities_average_to_target_and_follow_outlier_ratios():
    ratios = [0.010, 0.030, 0.020, 0.002, 0.050]
    sparsity = owl_sparsities(ratios, target=0.5, lam=0.08)
    assert sum(sparsity) / len(sparsity) == pytest.approx(0.5, abs=1e-12)
    assert max(sparsity) - min(sparsity) == pytest.approx(0.16)
    by_ratio = [s for _, s in sorted(zip(ratios, sparsity, strict=True))]
    assert by_ratio == sorted(by_ratio, reverse=True)  # more outliers -> pruned less
    assert owl_sparsities([0.1, 0.1], 0.5, 0.08) == [0.5, 0.5]


def test_outlier_ratio_counts_scores_above_threshold_times_mean():
    weight = torch.tensor([[1.0, -2.0], [0.5, 20.0]])
    sq_norms = torch.tensor([4.0, 1.0])  # ||X_j|| = 2, 1 -> scores 2, 2, 1, 20; mean 6.25
    count = OutlierCount()
    count.add(weight, sq_norms)
    assert count.ratio(3.0) == pytest.approx(1 / 4)  # only 20 > 18.75
    assert count.ratio(1.0) == pytest.approx(1 / 4)
    assert outlier_ratio([torch.tensor([1.0, 1.0, 1.0, 5.0])], 1.5) == pytest.approx(1 / 4)


def test_owl_config_rejects_n_m_and_too_wide_lambda():
    config = RunConfig()
    config.prune.owl, config.prune.pattern = True, "2:4"
    with pytest.raises(ConfigError, match="unstructured"):
        config.validate()
    config.prune.pattern, config.prune.owl_lambda = "unstructured", 0.3
    with pytest.raises(ConfigError, match="owl_lambda"):
        config.validate()


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_owl_run_prunes_each_layer_to_its_own_sparsity(tiny_model_dir, tmp_path, method):
    out = tmp_path / "run"
    args = ["--prune.method", method, "--prune.owl", "true", "--prune.owl_lambda", "0.1", "--eval.perplexity", "false"]
    assert run_cli(tiny_model_dir, out, *args) == 0
    summary = json.loads((out / "summary.json").read_text())
    owl = summary["owl"]
    assert len(owl["sparsity"]) == len(owl["outlier_ratio"]) == 3
    assert sum(owl["sparsity"]) / 3 == pytest.approx(0.5)
    assert max(owl["sparsity"]) - min(owl["sparsity"]) == pytest.approx(0.2)
    for layer, target in enumerate(owl["sparsity"]):
        records = [r for r in summary["modules"] if r["layer"] == layer]
        achieved = sum(r["sparsity"] * r["numel"] for r in records) / sum(r["numel"] for r in records)
        assert achieved == pytest.approx(target, abs=0.02)  # per-row / per-block rounding only


# --- calibration mixes -----------------------------------------------------------------------------


def test_calibration_mix_specs():
    assert calibration_mix("en", 32) == {"en": 32}
    assert calibration_mix("en+sw", 5) == {"en": 3, "sw": 2}
    assert calibration_mix("all", 14) == {lang: 2 for lang in ("ar", "de", "en", "es", "ru", "sw", "zh")}
    assert calibration_mix("en:64, sw:16", 32) == {"en": 64, "sw": 16}
    assert calibration_mix("en+fr", 4) == {"en": 2, "fr": 2}  # any mC4 language (the source decides what it has)
    for bad in ("xx", "en+en", "en:0", "en:x", "en:2,en:3"):
        with pytest.raises(ConfigError):
            calibration_mix(bad, 32)


def test_mix_draws_exactly_the_requested_windows_per_language(char_tokenizer):
    def windows(spec, nsamples=4):
        data = PruningDataModule(
            DataConfig(calibration_language=spec, nsamples=nsamples, seqlen=16, eval_windows=0), char_tokenizer
        )
        data.setup()
        return data

    mix = windows("en:3,sw:2")
    assert mix.calibration_languages == ["en"] * 3 + ["sw"] * 2
    assert mix.calibration.ids.shape == (5, 16)
    # Each language's part is exactly what calibrating on that language alone would draw.
    assert torch.equal(mix.calibration.ids[:3], windows("en", 3).calibration.ids)
    assert torch.equal(mix.calibration.ids[3:], windows("sw", 2).calibration.ids)


# --- offload -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("place", ["cpu", "disk"])
def test_activation_store_round_trips(tmp_path, place):
    store = ActivationStore(place, torch.device("cpu"), tmp_path / "acts")
    tensors = [torch.randn(2, 3, 4) for _ in range(3)]
    for t in tensors:
        store.append(t)
    store[1] = tensors[1] * 2
    assert torch.equal(store[0], tensors[0]) and torch.equal(store[1], tensors[1] * 2)
    if place == "disk":
        assert len(list((tmp_path / "acts").rglob("*.pt"))) == 3
    store.close()
    assert not list((tmp_path / "acts").rglob("*.pt"))


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_offloaded_run_matches_in_memory_run(tiny_model_dir, tmp_path, method):
    common = ["--prune.method", method, "--save_model", "true"]
    assert run_cli(tiny_model_dir, tmp_path / "memory", *common) == 0
    offload = ["--offload_layers", "true", "--activations", "disk"]
    assert run_cli(tiny_model_dir, tmp_path / "offload", *common, *offload) == 0
    _assert_same_run(tmp_path / "memory", tmp_path / "offload", atol=0.0)
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("memory", "offload"))
    assert a["perplexity"] == b["perplexity"]
    assert not (tmp_path / "offload" / "activations").exists() or not any(
        (tmp_path / "offload" / "activations").iterdir()
    )


def _assert_same_run(dir_a, dir_b, atol):
    masks_a, masks_b = lp_prune.load_masks(dir_a), lp_prune.load_masks(dir_b)
    assert masks_a.keys() == masks_b.keys()
    for name in masks_a:
        assert torch.equal(masks_a[name], masks_b[name]), name
    weights_a = load_weights(dir_a / "model")  # one file or shards
    weights_b = load_weights(dir_b / "model")
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], atol=atol, rtol=0 if atol == 0 else 1e-5)


# --- data parallel (2 processes, gloo on CPU) ----------------------------------------------------


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_two_process_ddp_matches_single_process(tiny_model_dir, tmp_path, method):
    common = ["--prune.method", method, "--save_model", "true", "--accelerator", "cpu", "--wandb.mode", "disabled"]
    assert run_cli(tiny_model_dir, tmp_path / "single", *common) == 0
    cmd = [
        sys.executable,
        "-m",
        "lp_prune",
        "run",
        "--model.name",
        str(tiny_model_dir),
        "--out",
        str(tmp_path / "ddp"),
        *SMALL,
        *common,
        "--devices",
        "2",
        "--strategy",
        "ddp",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LP_PRUNE_RUN_DIR", None)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_run(tmp_path / "single", tmp_path / "ddp", atol=1e-6)
    single, ddp = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("single", "ddp"))
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    for lang, value in single["perplexity"]["pruned"].items():  # summed NLL over both processes' windows
        assert ddp["perplexity"]["pruned"][lang] == pytest.approx(value, rel=1e-4)
    assert ddp["eval_tokens"] == single["eval_tokens"]


# --- memory estimate ---------------------------------------------------------------------------------

SHAPE = ModelShape(
    total_params=1000,
    layer_params=100,
    n_layers=8,
    hidden=64,
    intermediate=256,
    attention_width=64,
    vocab=500,
    kv_width=16,
)


def test_memory_estimate_terms():
    """Each term by hand from what the code holds (memory.py's docstring)."""
    config = RunConfig()
    config.data.nsamples, config.data.seqlen, config.data.batch_size = 16, 32, 4
    estimate = estimate_memory(config, SHAPE, "cpu")
    assert estimate.weights == 1000 * 4
    assert estimate.activations == 16 * 32 * 64 * 4
    # float64 accumulators of the four inputs: q/k/v, o, gate/up (hidden = attention = 64), down (256).
    assert estimate.statistics == (3 * 64 * 64 + 256 * 256) * 8
    # The largest solve: down_proj (width 256, 64 rows): 12 c^2, its float32 rows, new weights and masks.
    assert estimate.solver == 12 * 256 * 256 + 64 * 256 * 4 + 64 * 256 * (4 + 1)
    # q/k/v's solve waits with the other three accumulators: smaller here.
    qkv = 2 * 64 * 64 * 8 + 256 * 256 * 8 + 12 * 64 * 64 + (64 + 32) * 64 * 9
    assert qkv < estimate.solver
    assert estimate.masks == 8 * 100 // 8
    hidden = 2 * config.data.eval_batch_size * config.data.eval_seqlen * 64 * 4
    # One block of logits and its float32 copy: min(1024, batch positions) x min(4096, vocab 500).
    positions = min(1024, config.data.eval_batch_size * config.data.eval_seqlen)
    assert estimate.evaluation == hidden + 2 * positions * 500 * 4
    config.activations, config.devices = "disk", 2
    parked = estimate_memory(config, SHAPE, "cpu")
    assert parked.activations == 2 * 4 * 32 * 64 * 4  # one batch in, one out
    config.offload_layers, config.model.dtype = True, "bfloat16"
    assert estimate_memory(config, SHAPE, "cuda").weights == (1000 - 8 * 100 + 100) * 2
    config.prune.method = method_named("wanda")  # sampled metrics: norms and the sampled inputs (all 512 tokens here)
    wanda = estimate_memory(config, SHAPE, "cuda")
    assert wanda.statistics == (3 * 64 + 256) * 8 + 512 * (3 * 64 + 256) * 4


def test_memory_check_stops_with_one_line(monkeypatch):
    estimate = MemoryEstimate(10 * 1024**3, 0, 0, 0, 0, 0, 0, "cpu")
    monkeypatch.setattr("lp_prune.memory.available_bytes", lambda kind: 1024**3)
    with pytest.raises(ConfigError, match=r"needs about 10\.00 GiB"):
        check_fits(estimate, processes_per_machine=1)
    monkeypatch.setattr("lp_prune.memory.available_bytes", lambda kind: 100 * 1024**3)
    check_fits(estimate, processes_per_machine=2)


def test_model_shape_counts_parameters_of_a_real_config(tiny_model_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = ModelShape.from_config(AutoConfig.from_pretrained(tiny_model_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert shape.total_params == sum(p.numel() for p in model.parameters())
    assert shape.layer_params == sum(p.numel() for p in model.model.layers[0].parameters())
    assert shape.n_layers == len(model.model.layers)


def test_run_prints_the_estimate_and_refuses_what_cannot_fit(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lp_prune.memory.available_bytes", lambda kind: 1024)
    assert run_cli(tiny_model_dir, tmp_path / "run") == 2
    captured = capsys.readouterr()
    assert "Memory estimate per process" in captured.out and "needs about" in captured.err
    assert not (tmp_path / "run").exists()  # stopped before anything was written


# --- half precision ----------------------------------------------------------------------------------


def test_statistics_stay_float32_for_bfloat16_inputs():
    linear = torch.nn.Linear(16, 8).to(torch.bfloat16)
    collector = InputCollector({"x": linear}, keep_gram=True)
    x = torch.randn(2, 5, 16).to(torch.bfloat16)
    linear(x)
    collector.remove()
    stats = collector.statistics["x"]
    assert stats.gram.dtype == torch.float64 and stats.sq_norms.dtype == torch.float32
    flat = x.reshape(-1, 16).double()
    torch.testing.assert_close(stats.gram, flat.T @ flat, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_bfloat16_run_prunes_to_target(tiny_model_dir, tmp_path, method):
    out = tmp_path / "run"
    assert run_cli(tiny_model_dir, out, "--prune.method", method, "--model.dtype", "bfloat16") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"] == pytest.approx(0.5, abs=1e-6)
    assert all(torch.isfinite(torch.tensor(list(summary["perplexity"]["pruned"].values()))))


# --- single pass ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_single_pass_equals_true_sequential_with_one_batch(tiny_model_dir, tmp_path, method):
    """One forward per layer with hooks == the two-pass true-sequential schedule when all windows form
    one batch (same statistics, same order of pruning), so masks and weights agree."""
    common = ["--prune.method", method, "--save_model", "true", "--eval.perplexity", "false"]
    two_pass = ["--prune.true_sequential", "true", "--data.batch_size", "4"]  # SMALL has 4 windows
    assert run_cli(tiny_model_dir, tmp_path / "two", *common, *two_pass) == 0
    assert run_cli(tiny_model_dir, tmp_path / "one", *common, "--prune.single_pass", "true") == 0
    _assert_same_run(tmp_path / "two", tmp_path / "one", atol=1e-6)
    two, one = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("two", "one"))
    assert one["sparsity"] == pytest.approx(0.5, abs=1e-6)
    for a, b in zip(two["modules"], one["modules"], strict=True):
        assert a["module"] == b["module"]
        assert b["snr_db"] == pytest.approx(a["snr_db"], rel=1e-4)


def test_wanda_without_local_error_prunes_the_same_weights(tiny_model_dir, tmp_path):
    """prune.local_error false drops only the error/SNR records (no Gram). The squared norms are then
    summed directly instead of read off the Gram diagonal, so near-ties may flip (rounding only)."""
    common = ["--prune.method", "wanda", "--save_model", "true", "--eval.perplexity", "false"]
    assert run_cli(tiny_model_dir, tmp_path / "gram", *common) == 0
    assert run_cli(tiny_model_dir, tmp_path / "norms", *common, "--prune.local_error", "false") == 0
    masks_gram, masks_norms = (lp_prune.load_masks(tmp_path / d) for d in ("gram", "norms"))
    assert masks_gram.keys() == masks_norms.keys()
    for name, mask in masks_gram.items():
        assert (mask == masks_norms[name]).float().mean() >= 0.999, name
    gram, norms = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("gram", "norms"))
    assert all(m["snr_db"] is not None for m in gram["modules"])
    assert all(m["snr_db"] is None and m["error"] is None for m in norms["modules"])  # NaN, written as null


# --- Lightning's launcher: fabric run ------------------------------------------------------------------


def test_launcher_variables_fill_the_configs_defaults():
    from lp_prune.launcher import apply_launcher_environment

    env = {"LT_ACCELERATOR": "cpu", "LT_DEVICES": "2", "LT_NUM_NODES": "1", "LT_PRECISION": "bf16-mixed"}
    config = apply_launcher_environment(RunConfig(), env)
    assert (config.accelerator, config.devices, config.strategy, config.model.dtype) == ("cpu", 2, "ddp", "bfloat16")
    chosen = RunConfig(devices=3, accelerator="gpu", strategy="ddp")
    chosen.model.dtype = "float16"
    kept = apply_launcher_environment(chosen, env)  # set in the config: the config wins
    assert (kept.accelerator, kept.devices, kept.model.dtype) == ("gpu", 3, "float16")
    assert apply_launcher_environment(RunConfig(), {"LT_DEVICES": "0,1"}).devices == [0, 1]
    assert apply_launcher_environment(RunConfig(), {"LT_DEVICES": "auto"}).devices == "auto"
    assert apply_launcher_environment(RunConfig(), {}) == RunConfig()
    with pytest.raises(ConfigError, match=r"fabric run --precision 'transformer-engine' is not one of"):
        apply_launcher_environment(RunConfig(), {"LT_PRECISION": "transformer-engine"})


def test_fabric_run_with_two_devices_matches_single_process(tiny_model_dir, tmp_path):
    """`fabric run --accelerator=cpu --devices=2 <installed lp_prune/__main__.py> run ...`, from another
    folder, starts two processes (torchrun) and lp_prune runs data parallel in them: the same masks as
    one process."""
    common = ["--prune.method", "sparsegpt", "--save_model", "true", "--wandb.mode", "disabled"]
    assert run_cli(tiny_model_dir, tmp_path / "single", *common, "--accelerator", "cpu") == 0
    script = Path(lp_prune.__file__).parent / "__main__.py"
    # `python -m lightning.fabric.cli` is the `fabric run` command itself (the console script's subcommand).
    launcher = [sys.executable, "-m", "lightning.fabric.cli", "--accelerator=cpu", "--devices=2"]
    launcher += [f"--main-port={_free_port()}", str(script)]
    args = ["run", "--model.name", str(tiny_model_dir), "--out", str(tmp_path / "fabric"), *SMALL, *common]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LP_PRUNE_RUN_DIR", None)
    done = subprocess.run([*launcher, *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_run(tmp_path / "single", tmp_path / "fabric", atol=1e-6)
    assert json.loads((tmp_path / "fabric" / "summary.json").read_text())["world_size"] == 2


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
