"""Sweep files: W&B semantics of expansion, the agent's command line, and the resumable runner."""

import json
import random
import re

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from lp_prune.cli import main
from lp_prune.errors import ConfigError
from lp_prune.sweeps.expand import Sweep, agent_command, expand, load_sweep
from lp_prune.sweeps.parameters import sample
from lp_prune.sweeps.runner import plan, run_name, validate_runs
from wandb_offline import closed_log, find_offline_runs, iter_records


def write_sweep(tmp_path, body: dict):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def grid_body(**parameters):
    return {"name": "t", "method": "grid", "parameters": parameters}


def test_grid_is_the_cartesian_product_in_the_w_and_b_servers_order(tmp_path):
    sweep = load_sweep(
        write_sweep(
            tmp_path,
            grid_body(
                **{
                    "prune.method": {"values": ["sparsegpt", "wanda"]},
                    "data.calibration_language": {"values": ["en", "sw", "zh"]},
                    "data.nsamples": {"value": 4},
                }
            ),
        )
    )
    combos = expand(sweep)
    assert len(combos) == 6
    assert combos[0] == {"prune.method": "sparsegpt", "data.calibration_language": "en", "data.nsamples": 4}
    assert combos[-1] == {"prune.method": "wanda", "data.calibration_language": "zh", "data.nsamples": 4}
    assert list(combos[0]) == ["prune.method", "data.calibration_language", "data.nsamples"]  # keys: the file's order
    # parameters sorted by name, the last varying fastest: data.calibration_language before prune.method
    assert [(c["data.calibration_language"], c["prune.method"]) for c in combos[:3]] == [
        ("en", "sparsegpt"),
        ("en", "wanda"),
        ("sw", "sparsegpt"),
    ]
    assert len({run_name(c) for c in combos}) == 6


def test_nested_parameters_flatten_to_dotted_keys(tmp_path):
    body = grid_body(prune={"parameters": {"method": {"values": ["wanda"]}}})
    assert expand(load_sweep(write_sweep(tmp_path, body))) == [{"prune.method": "wanda"}]


def test_grid_rejects_continuous_distributions(tmp_path):
    body = grid_body(**{"prune.sparsity": {"distribution": "uniform", "min": 0.1, "max": 0.6}})
    with pytest.raises(ConfigError, match="grid sweeps need 'values'"):
        expand(load_sweep(write_sweep(tmp_path, body)))


def test_random_draws_are_seeded_and_follow_the_distributions(tmp_path):
    body = {
        "name": "r",
        "method": "random",
        "parameters": {
            "prune.sparsity": {"distribution": "uniform", "min": 0.2, "max": 0.6},
            "data.nsamples": {"distribution": "int_uniform", "min": 4, "max": 9},
            "prune.percdamp": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
            "data.seqlen": {"distribution": "q_uniform", "min": 64, "max": 512, "q": 64},
            "data.calibration_language": {"values": ["en", "sw", "zh"], "probabilities": [0.5, 0.5, 0.0]},
            "prune.method": {"value": "wanda"},
        },
    }
    sweep = load_sweep(write_sweep(tmp_path, body))
    draws = expand(sweep, count=200, seed=3)
    assert draws == expand(sweep, count=200, seed=3)
    assert draws != expand(sweep, count=200, seed=4)
    assert all(0.2 <= d["prune.sparsity"] <= 0.6 for d in draws)
    assert {d["data.nsamples"] for d in draws} == set(range(4, 10))
    assert all(1e-4 <= d["prune.percdamp"] <= 1e-1 for d in draws)
    assert min(d["prune.percdamp"] for d in draws) < 1e-3  # log-uniform reaches the low decades
    assert {d["data.seqlen"] % 64 for d in draws} == {0} and all(isinstance(d["data.seqlen"], int) for d in draws)
    assert {d["data.calibration_language"] for d in draws} == {"en", "sw"}
    assert {d["prune.method"] for d in draws} == {"wanda"}


def test_random_needs_a_count(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, {"method": "random", "parameters": {"seed": {"values": [1, 2]}}}))
    with pytest.raises(ConfigError, match="--count"):
        expand(sweep)


def test_sample_of_categorical_values_is_uniform():
    rng = random.Random(0)
    counts = {v: 0 for v in "abc"}
    for _ in range(3000):
        counts[sample({"values": list("abc")}, rng)] += 1
    assert all(900 < c < 1100 for c in counts.values())


def test_agent_command_matches_wandb_agent_arguments():
    sweep = Sweep("s", "grid", {}, ["${env}", "lp-prune", "run", "--config", "c.yaml", "${args}"], None, None, {})
    params = {"prune.method": "wanda", "data.nsamples": 8, "prune.true_sequential": True}
    expected_args = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})["args"]
    assert agent_command(sweep, params) == ["/usr/bin/env", "lp-prune", "run", "--config", "c.yaml", *expected_args]
    default = Sweep("s", "grid", {}, ["${env}", "${interpreter}", "${program}", "${args}"], "train.py", None, {})
    assert agent_command(default, {"a": 1}) == ["/usr/bin/env", "python", "train.py", "--a=1"]


def test_unknown_config_key_is_rejected(tmp_path, capsys):
    path = write_sweep(tmp_path, grid_body(**{"prune.bogus": {"values": [1]}}))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    assert "sweep parameter 'prune.bogus' is not a config key" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("prune.method", "obs", "prune.method 'obs'"), ("data.calibration_language", "fr", "only, not 'fr'")],
)
def test_bad_values_are_rejected_before_any_run(tmp_path, key, value, message):
    body = grid_body(**{key: {"values": [value]}})
    body["command"] = ["${env}", "lp-prune", "run", "${args}"]
    sweep = load_sweep(write_sweep(tmp_path, body))
    with pytest.raises(ConfigError, match=message):
        validate_runs(plan(sweep, expand(sweep), tmp_path), sweep)


def test_local_sweep_runs_offline_and_resumes(tiny_model_dir, tmp_path, capsys):
    body = grid_body(**{"data.calibration_language": {"values": ["en", "sw"]}})
    body["command"] = [
        "${env}", "lp-prune", "run", f"--model.name={tiny_model_dir}", "--data.nsamples=2", "--data.seqlen=16",
        "--data.eval_windows=1", "--data.eval_seqlen=16", "--data.eval_languages=[en]", "${args}",
    ]  # fmt: skip
    path = write_sweep(tmp_path, body)
    root = tmp_path / "sweeps"
    assert main(["sweep", str(path), "--root", str(root)]) == 0
    printed = capsys.readouterr().out  # a line per finished run: i/N, name, status, time, ETA of the rest
    assert re.search(r"^\[1/2\] en-\w+  COMPLETE  \d+s  ETA \d+s$", printed, re.M), printed
    assert re.search(r"^\[2/2\] sw-\w+  COMPLETE  \d+s$", printed, re.M), printed
    for run in ("en", "sw"):
        (run_dir,) = root.glob(f"t/{run}-*[!.log]")
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["calibration_language"] == run
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["wandb"]["group"] == "t"
        (logged,) = find_offline_runs(run_dir / "wandb")  # named from its recipe, grouped by the sweep
        info = next(r.run for r in iter_records(closed_log(logged)) if r.WhichOneof("record_type") == "run")
        assert (info.display_name, info.run_group) == (f"sparsegpt-0.5-{run}-d0", "t")
        assert list(info.tags) == ["t", f"{tiny_model_dir.name}-sparsegpt-0.5", "sparsegpt", f"cal:{run}"]
    capsys.readouterr()
    assert main(["sweep", str(path), "--root", str(root), "--dry-run"]) == 0
    assert "2 complete, 0 to run" in capsys.readouterr().out
    # Un-finish one run: only that one runs again.
    (next(root.glob("t/sw-*[!.log]")) / "status").write_text("RUNNING\n")
    assert main(["sweep", str(path), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "[1/1] sw-" in out and "en-" not in out.split("[1/1]")[1].split("\n")[0]


def test_sweep_name_cannot_escape_the_root(tmp_path):
    path = write_sweep(tmp_path, {"name": "../../outside", "parameters": {"seed": {"values": [1]}}})
    with pytest.raises(ConfigError, match="sweep name"):
        load_sweep(path)
