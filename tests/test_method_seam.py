"""The pruning-method seam: a method defined in one file outside src runs the whole job."""

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

import lp_prune
from lp_prune.cli import main
from lp_prune.config import PruneConfig
from lp_prune.models.loading import load_run_model
from lp_prune.pruning import PruningMethod, registry

SMALL = ["--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2", "--data.eval_windows", "2"]
SMALL += ["--data.eval_seqlen", "32", "--data.eval_languages", "[en, sw]", "--wandb.mode", "disabled"]


@pytest.fixture
def toy_method():
    import toy_method

    registry.register(toy_method.InputColumns)
    yield toy_method.InputColumns
    registry.unregister(toy_method.InputColumns.name)


def test_a_method_from_one_file_runs_end_to_end(tiny_model_dir, tmp_path, toy_method, monkeypatch):
    """Config validation, the statistics it asks for, the memory estimate, the pruner and loading from
    masks all ask the method: its column masks come out, and its solve got the input norms only."""
    seen = []
    real_prune = toy_method.prune

    def watched(self, weights, sparsity, inputs, context, runtime):
        seen.append((inputs.gram is None, inputs.sq_norms is not None))
        return real_prune(self, weights, sparsity, inputs, context, runtime)

    monkeypatch.setattr(toy_method, "prune", watched)
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), "--prune.method", "input_columns"]
    assert main([*argv, *SMALL]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "input_columns" and summary["sparsity"] == pytest.approx(0.5)
    assert len(seen) == 3 * 4 and all(no_gram and norms for no_gram, norms in seen)  # 3 layers x 4 inputs
    masks = lp_prune.load_masks(out)
    assert len(masks) == 3 * 7
    for name, mask in masks.items():
        assert torch.equal(mask, mask[:1].expand_as(mask)), name  # whole columns
    model, _ = load_run_model(out)  # masks alone rebuild it: the method keeps the kept weights
    for name, module in model.named_modules():
        if name in masks:
            assert (module.weight[masks[name]] == 0).all()


def test_a_method_is_asked_about_its_settings(tiny_model_dir, tmp_path, toy_method, capsys):
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(tmp_path / "run"), *SMALL]
    assert main([*argv, "--prune.method", "input_columns", "--prune.pattern", "2:4"]) != 0
    assert "no N:M form" in capsys.readouterr().err
    assert not (tmp_path / "run" / "summary.json").exists()


def test_an_unknown_method_is_one_line_naming_the_registered_ones(tiny_model_dir, tmp_path, capsys):
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(tmp_path / "run"), *SMALL]
    assert main([*argv, "--prune.method", "obs"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "prune.method 'obs' is not one of:" in err
    assert all(name in err for name in ("sparsegpt", "wanda", "magnitude"))


def test_a_second_method_under_a_taken_name_is_refused(toy_method):
    class Impostor(toy_method):
        pass

    with pytest.raises(ValueError, match="already registered"):
        registry.register(Impostor)


def test_an_incomplete_method_is_refused():
    class NotAMethod:
        name, statistics, default_local_error, updates_kept_weights = "broken", "none", "sample", False

    @dataclass(frozen=True)
    class NoPrune(PruningMethod):
        name, statistics = "broken", "none"

    with pytest.raises(TypeError, match="PruningMethod"):
        registry.register(NotAMethod)
    with pytest.raises(TypeError, match="lacks its prune"):
        registry.register(NoPrune)
    assert "broken" not in registry.method_names()


def test_methods_installed_as_entry_points_are_found(tmp_path):
    """A package declaring an `lp_prune.methods` entry point makes its method a valid prune.method."""
    package = tmp_path / "site"
    (package / "toy_plugin").mkdir(parents=True)
    (package / "toy_plugin" / "__init__.py").write_text(
        "from lp_prune.pruning.magnitude import Magnitude\nfrom lp_prune.pruning import register\n"
        "class Plugged(Magnitude):\n    name = 'plugged'\nregister(Plugged)\n"
    )
    info = package / "toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[lp_prune.methods]\nplugged = toy_plugin\n")
    code = "from lp_prune.pruning import method_names; print(','.join(method_names()))"
    env_path = f"{package}"
    names = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": env_path}
    ).stdout.strip()
    assert "plugged" in names.split(",") and "sparsegpt" in names.split(",")


def test_a_run_whose_config_held_every_methods_settings_resumes(tmp_path):
    """Runs started when config.yaml held every method's settings (prune.bits for sparsegpt) resume: keys
    the run's method does not read are no difference; one it reads still is."""
    from types import SimpleNamespace

    from lp_prune.config import RunConfig
    from lp_prune.errors import UserError
    from lp_prune.tracking.fingerprint import check_resumable, started_with
    from lp_prune.tracking.run_dir import RunDirectory

    config, model_config = RunConfig(), SimpleNamespace(hidden_size=8)
    started = started_with(config, model_config)
    started["config"]["prune"].update(bits=4, group_size=None, symmetric=False, act_order=False)
    run_dir = RunDirectory.create(tmp_path / "run")
    run_dir.write_marker(started)
    check_resumable(run_dir, config, model_config)
    config.prune = PruneConfig.of(method="sparsegpt", blocksize=64)
    with pytest.raises(UserError, match=r"prune\.blocksize: 128 -> 64"):
        check_resumable(run_dir, config, model_config)
