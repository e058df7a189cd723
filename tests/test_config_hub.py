"""configs/ and sweeps/ ship in the package: their paths work from any folder, a W&B agent's included."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import lp_prune
from lp_prune.config.hub import HUB, packaged, resolve
from lp_prune.sweeps.expand import expand, load_sweep
from lp_prune.sweeps.runner import _launcher_length, plan

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"
LP_PRUNE = [sys.executable, "-m", "lp_prune"]


def lp_prune_env() -> dict[str, str]:
    """This lp_prune (the checkout's src/) for a child process started in another folder."""
    src = str(Path(lp_prune.__file__).parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def run_in(folder: Path, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=folder, env=lp_prune_env(), capture_output=True, text=True, timeout=300)


def test_run_reads_the_packaged_default_config_from_an_empty_folder(tmp_path):
    done = run_in(tmp_path, [*LP_PRUNE, "run", "--config", "configs/default.yaml", "--print_config"])
    assert done.returncode == 0, done.stderr
    printed = yaml.safe_load(done.stdout)
    assert printed["model"]["name"] == "gemma3-270m" and printed["data"]["source"] == "packaged"
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran


@pytest.mark.parametrize("file", ["sweeps/languages-default.yaml", "sweeps/language-aware.yaml"])
def test_a_sweep_command_as_the_agent_builds_it_works_from_an_empty_folder(file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(file)
    agent_argv = plan(sweep, expand(sweep), tmp_path / "runs")[-1].argv  # the W&B agent's argv, macros replaced
    assert "configs/default.yaml" in agent_argv  # the file names the config by its hub path
    options = agent_argv[_launcher_length(agent_argv) :]  # what follows `lp-prune`
    done = run_in(tmp_path, [*LP_PRUNE, *options, "--print_config"])
    assert done.returncode == 0, done.stderr
    printed = yaml.safe_load(done.stdout)
    params = plan(sweep, expand(sweep), tmp_path)[-1].params
    assert printed["prune"]["method"] == params["prune.method"]
    if "config" in params:  # a recipe given as a later --config: configs/language-aware/*.yaml
        recipe = yaml.safe_load(packaged(params["config"]).read_text())
        assert printed["data"]["source"] == recipe["data"].get("source", "packaged")


def test_a_file_in_the_working_folder_wins_over_the_packaged_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve("configs/default.yaml") == str(HUB / "configs" / "default.yaml")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "default.yaml").write_text("model:\n  name: my-model\n")
    assert resolve("configs/default.yaml") == "configs/default.yaml"
    assert resolve("configs/nothing-like-it.yaml") == "configs/nothing-like-it.yaml"  # reported as missing, as given
    assert resolve("elsewhere/default.yaml") == "elsewhere/default.yaml"
    assert packaged("../configs/default.yaml") is None
    assert packaged("configs/../../__init__.py") is None  # nothing outside the hub


def test_sweeps_holds_sweep_files_only_and_their_recipes_are_packaged_configs():
    sweep_folder = HUB / "sweeps"
    assert [path for path in sweep_folder.iterdir() if path.suffix != ".yaml"] == []  # no recipe folders
    for path in sorted(sweep_folder.glob("*.yaml")):
        sweep = load_sweep(path)
        for key, spec in sweep.parameters.items():
            if key == "config":
                for value in spec.get("values", [spec.get("value")]):
                    assert value.startswith("configs/") and packaged(value) is not None, (path.name, value)


def test_the_wheel_takes_every_file_of_the_hub():
    """pyproject's package-data globs cover configs/ and sweeps/, so a non-editable install has them."""
    patterns = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["lp_prune"]
    package = Path(lp_prune.__file__).parent
    shipped = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    hub_files = {path for path in HUB.rglob("*") if path.is_file()}
    assert len(hub_files) >= 20 and hub_files <= shipped, sorted(map(str, hub_files - shipped))
