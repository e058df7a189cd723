"""configs/ and sweeps/ at the repository's top level ship in the package: their paths work from any
folder, a W&B agent's included, and `lp-prune configs` lists them."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import lp_prune
from lp_prune.cli import main
from lp_prune.commands.configs import listing
from lp_prune.config.hub import HUB, HUB_FOLDERS, description, hub_files, hub_root, packaged, resolve
from lp_prune.sweeps.expand import expand, load_sweep
from lp_prune.sweeps.runner import _launcher_length, plan

REPO = Path(__file__).parents[1]
LP_PRUNE = [sys.executable, "-m", "lp_prune"]


def repository_files() -> list[str]:
    """Every file under the repository's top-level configs/ and sweeps/, found without config.hub."""
    found = []
    for folder in HUB_FOLDERS:
        for parent, _, names in os.walk(REPO / folder):
            found += [(Path(parent) / name).relative_to(REPO).as_posix() for name in names]
    return sorted(found)


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
    assert packaged("configs/../pyproject.toml") is None  # nor beside its folders
    assert packaged("configs/../sweeps/study.yaml") is None  # a configs/ path names a file in configs/


def test_sweeps_holds_sweep_files_only_and_their_recipes_are_packaged_configs():
    sweep_folder = HUB / "sweeps"
    assert [path for path in sweep_folder.iterdir() if path.suffix != ".yaml"] == []  # no recipe folders
    for path in sorted(sweep_folder.glob("*.yaml")):
        sweep = load_sweep(path)
        for key, spec in sweep.parameters.items():
            if key == "config":
                for value in spec.get("values", [spec.get("value")]):
                    assert value.startswith("configs/") and packaged(value) is not None, (path.name, value)


def test_the_hub_is_the_repositorys_top_level_configs_and_sweeps():
    """One copy: the files the hub names are the top-level folders' files, byte for byte."""
    files = repository_files()
    assert len(files) >= 20 and {name.split("/")[0] for name in files} == set(HUB_FOLDERS)
    assert hub_files() == files
    for name in files:
        assert packaged(name).read_bytes() == (REPO / name).read_bytes(), name
    assert not (REPO / "src" / "lp_prune" / "config_hub").exists()  # no second copy inside the package


def test_sweep_where_names_the_packaged_file_from_an_empty_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "sweeps/study.yaml", "--where"]) == 0
    assert capsys.readouterr().out == f"{(HUB / 'sweeps' / 'study.yaml').resolve()}\n"
    assert (HUB / "sweeps" / "study.yaml").read_bytes() == (REPO / "sweeps" / "study.yaml").read_bytes()


def test_the_hub_is_the_checkouts_top_level_or_the_installed_packages_copy(tmp_path):
    checkout = tmp_path / "clone"
    for folder in ("src/lp_prune", "configs", "sweeps"):
        (checkout / folder).mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("")
    assert hub_root(checkout / "src" / "lp_prune") == checkout
    installed = tmp_path / "site-packages" / "lp_prune"
    (installed / "config_hub" / "configs").mkdir(parents=True)
    assert hub_root(installed) == installed / "config_hub"
    (checkout / "sweeps").rmdir()  # not a checkout with the hub: the package's own copy
    assert hub_root(checkout / "src" / "lp_prune") == checkout / "src" / "lp_prune" / "config_hub"


def test_the_wheels_build_step_copies_every_file_where_the_installed_hub_reads_it(tmp_path):
    """setup.py's build_py: configs/ and sweeps/ into lp_prune/config_hub/ of the built package (the
    wheel's content); an editable build copies nothing."""
    pytest.importorskip("setuptools")
    from setuptools import Distribution

    spec = importlib.util.spec_from_file_location("lp_prune_setup", REPO / "setup.py")
    setup_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_module)  # not __main__: defines the step, builds nothing

    def build(editable: bool) -> Path:
        command = Distribution({"cmdclass": {"build_py": setup_module.BuildPyWithHub}}).get_command_obj("build_py")
        command.build_lib = str(tmp_path / ("editable" if editable else "wheel"))
        command.editable_mode = editable
        command.ensure_finalized()
        command.run()
        return Path(command.build_lib)

    package = build(editable=False) / "lp_prune"
    assert hub_root(package) == package / "config_hub"
    assert hub_files(package / "config_hub") == repository_files()
    for name in repository_files():
        assert (package / "config_hub" / name).read_bytes() == (REPO / name).read_bytes(), name
    assert not build(editable=True).exists()


def test_configs_lists_every_packaged_config_and_sweep_with_a_line_about_it(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    listed = {}
    for line in out.splitlines():
        words = line.split(maxsplit=1)
        if words and words[0].startswith(tuple(f"{folder}/" for folder in HUB_FOLDERS)):
            assert words[0] not in listed, words[0]
            listed[words[0]] = words[1] if len(words) > 1 else ""
    assert sorted(listed) == repository_files()  # every file under configs/ and sweeps/, nothing else
    assert [name for name, about in listed.items() if not about] == []
    assert listed["configs/default.yaml"].startswith("The embedded default: Gemma-3-270M")
    assert listed["configs/models/shapes/llama3-8b.json"].endswith(
        "LlamaForCausalLM, 32 layers, 4096 hidden, 128256 vocab"
    )
    assert out == listing() + "\n"


def test_configs_starts_without_the_ml_libraries(tmp_path):
    code = "import sys; from lp_prune.cli import main; main(['configs']); print(*sorted(sys.modules), file=sys.stderr)"
    done = run_in(tmp_path, [sys.executable, "-c", code])
    assert done.returncode == 0, done.stderr
    loaded = set(done.stderr.split())
    assert {"lightning", "transformers", "wandb"}.isdisjoint(loaded), loaded & {"lightning", "transformers", "wandb"}


def test_a_description_is_a_sweeps_field_or_the_opening_comments_first_sentence(tmp_path):
    (tmp_path / "field.yaml").write_text("# A comment.\nname: x\ndescription: 'What it is: a sweep'\n")
    assert description(tmp_path / "field.yaml") == "What it is: a sweep"
    (tmp_path / "comment.yaml").write_text(
        "# First sentence, over\n# two lines. Second sentence.\n#   usage: lp-prune ...\nname: x\n"
    )
    assert description(tmp_path / "comment.yaml") == "First sentence, over two lines."
    (tmp_path / "usage.yaml").write_text("# Starts here and runs\n#   lp-prune sweep sweeps/usage.yaml\n# on.\n")
    assert description(tmp_path / "usage.yaml") == "Starts here and runs"
    (tmp_path / "long.yaml").write_text("# " + "word " * 60 + "end.\n")
    long = description(tmp_path / "long.yaml")
    assert long.endswith("…") and len(long) <= 100 and " wor…" not in long
    (tmp_path / "bare.yaml").write_text("model:\n  name: x\n")
    assert description(tmp_path / "bare.yaml") == ""
    (tmp_path / "shape.json").write_text('{"model_type": "llama", "num_hidden_layers": 2}')
    assert description(tmp_path / "shape.json") == "Model shape for `estimate --shape`: llama, 2 layers"
