"""The pruning-method seam: a method defined in one file outside src runs the whole job."""

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import torch

import lp_prune
from lp_prune.analysis.runs import load_run
from lp_prune.cli import main
from lp_prune.config import PruneConfig, read_run_config, run_config_parser
from lp_prune.config.io import run_config_from
from lp_prune.models.loading import load_run_model
from lp_prune.pruning import GroupInputs, PruneContext, PrunedWeight, PruningMethod, Runtime, registry

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

    @dataclass(frozen=True)
    class TypedDeclaration(StridedColumns):
        statistics: str = "gram"  # with a type, a dataclass field: a setting, not what the method declares

    with pytest.raises(TypeError, match="PruningMethod"):
        registry.register(NotAMethod)
    with pytest.raises(TypeError, match="lacks its prune"):
        registry.register(NoPrune)
    with pytest.raises(TypeError, match="statistics is declared, not a setting"):
        registry.register(TypedDeclaration)
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


# --- a method with two settings of its own, defined here and nowhere else ----------------------------


@dataclass(frozen=True)
class StridedColumns(PruningMethod):
    """Prunes every `stride`-th input column from `offset` on, in every Linear: whole columns, chosen
    without calibration data, so the masks show exactly which settings reached the method."""

    name = "strided_columns"
    display_name = "Strided columns"
    statistics = "none"

    stride: int = 2
    """Prune every stride-th input column."""
    offset: int = 0
    """The first pruned input column."""

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        context: PruneContext,
        runtime: Runtime,
    ) -> list[PrunedWeight]:
        results = []
        for weight in weights:
            mask = torch.zeros_like(weight, dtype=torch.bool)
            mask[:, self.offset :: self.stride] = True
            results.append(PrunedWeight(weight.masked_fill(mask, 0), mask))
        return results


CLASS_PATH = f"{StridedColumns.__module__}.{StridedColumns.__qualname__}"


@pytest.fixture
def strided_columns():
    registry.register(StridedColumns)
    yield StridedColumns
    registry.unregister(StridedColumns.name)


def assert_strided_masks(run_dir, stride: int, offset: int) -> None:
    masks = lp_prune.load_masks(run_dir)
    assert len(masks) == 3 * 7
    for name, mask in masks.items():
        expected = torch.zeros_like(mask)
        expected[:, offset::stride] = True
        assert torch.equal(mask, expected), name


def test_a_registered_method_takes_its_own_settings_as_flat_keys(tiny_model_dir, tmp_path, strided_columns):
    """The two settings reach the method from the command line, and summary.json and config.yaml record
    them; a flat key of other methods (blocksize) is ignored; the model card names it as it says."""
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL]
    options = ["--prune.method", "strided_columns", "--prune.stride", "3", "--prune.offset", "1"]
    assert main([*argv, *options, "--prune.blocksize", "64", "--save_model", "true"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method_spec"] == {"name": "strided_columns", "settings": {"stride": 3, "offset": 1}}
    capabilities = summary["method_capabilities"]
    assert capabilities["display_name"] == "Strided columns" and capabilities["calibrates"] is False
    assert_strided_masks(out, stride=3, offset=1)
    assert read_run_config(out / "config.yaml").prune.method == StridedColumns(stride=3, offset=1)
    assert "pruned with Strided columns" in (out / "model" / "README.md").read_text()  # the model card


def test_a_method_chosen_by_class_path_needs_no_registration(tiny_model_dir, tmp_path):
    """Named by its class path (its module is imported), the method runs with its settings from Python,
    and its run folder reads back to the same method."""
    assert registry.method_class("strided_columns") is None
    parser = run_config_parser()
    config = run_config_from(parser.instantiate_classes(parser.parse_args(SMALL)))
    config.model.name, config.out = str(tiny_model_dir), str(tmp_path / "run")
    config.prune = PruneConfig.of(method=CLASS_PATH, stride=4, offset=2)
    out = lp_prune.run(config)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method_spec"] == {"name": CLASS_PATH, "settings": {"stride": 4, "offset": 2}}
    assert_strided_masks(out, stride=4, offset=2)
    assert read_run_config(out / "config.yaml").prune.method == StridedColumns(stride=4, offset=2)


def test_a_saved_run_is_read_with_the_capabilities_its_summary_records(tiny_model_dir, tmp_path, strided_columns):
    """Once the method is gone from the registry (another machine), the analysis still knows from the
    run's summary that it read no calibration data, and config.yaml keeps its settings."""
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, "--prune.stride", "3"]
    assert main([*argv, "--prune.method", "strided_columns"]) == 0
    registry.unregister(StridedColumns.name)
    run = load_run(out)
    assert not run.calibrated and run.recipe == "none"  # the registry alone would say it calibrates
    assert run.capabilities.display_name == "Strided columns"
    assert run.method_settings == {"stride": 3, "offset": 0}
    assert run.config.prune.method.settings() == {"stride": 3, "offset": 0}  # kept with its name


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
