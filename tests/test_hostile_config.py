"""Config values that once ran silently wrong, hung, or gave tracebacks: each is one line on stderr and
exit 2, before the run directory is written."""

import math
import os
from dataclasses import replace
from pathlib import Path

import pytest

from lp_prune.config import RunConfig
from lp_prune.config.values import check_finite, size_in_bytes
from lp_prune.errors import ConfigError
from lp_prune.safe_yaml import MAX_DEPTH, YamlLimitError, load_yaml_text
from test_input_refusals import SMALL, refusal, run_argv

# --- non-finite numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "key", "shown"),
    [
        ("prune:\n  owl: true\n  owl_threshold: .nan\n", "prune.owl_threshold", "nan"),
        ("data:\n  generation:\n    tries: .nan\n", "data.generation.tries", "nan"),
        ("data:\n  generation:\n    temperature: .inf\n", "data.generation.temperature", "inf"),
        ("prune:\n  language_weights: {en: -.inf}\n", "prune.language_weights.en", "-inf"),
    ],
    ids=["owl_threshold", "tries", "temperature", "language_weight"],
)
def test_non_finite_numbers_in_a_config_file_are_refused(yaml_text, key, shown, tiny_model_dir, tmp_path, capsys):
    config, out = tmp_path / "config.yaml", tmp_path / "out"
    config.write_text(yaml_text)
    err = refusal(capsys, run_argv(tiny_model_dir, out, "--config", str(config)))
    assert f"{key} must be a finite number, got {shown}" in err
    assert not out.exists()


def test_nan_on_the_command_line_is_refused(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    err = refusal(capsys, run_argv(tiny_model_dir, out, "--prune.owl", "true", "--prune.owl_threshold", ".nan"))
    assert "prune.owl_threshold must be a finite number, got nan" in err
    assert not out.exists()


def test_every_float_setting_is_checked_for_finiteness():
    config = RunConfig()
    config.prune.method = replace(config.prune.method, percdamp=math.nan)
    with pytest.raises(ConfigError, match=r"^prune\.percdamp must be a finite number, got nan$"):
        check_finite(config)
    config = RunConfig()
    config.data.eval_fraction = math.inf
    with pytest.raises(ConfigError, match=r"data\.eval_fraction must be a finite number"):
        config.validate()
    check_finite(RunConfig())


# --- empty folder names --------------------------------------------------------------------------------


def test_empty_out_is_refused_not_taken_as_the_default(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = refusal(capsys, [*run_argv(tiny_model_dir, tmp_path / "unused"), "--out", ""])
    assert "--out '' names no folder" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "unused").exists()


def test_empty_resume_is_refused_not_a_new_run(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = refusal(capsys, ["run", "--resume", "", "--model.name", str(tiny_model_dir), *SMALL])
    assert "--resume '' names no folder" in err
    assert list(tmp_path.iterdir()) == []


def test_resume_through_a_symlink_loop_is_one_line(tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    err = refusal(capsys, ["run", "--resume", str(loop)])
    assert f"--resume {loop}: Too many levels of symbolic links" in err


# --- groups, sizes, W&B settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [("prune: 3\n", "prune is a group of settings"), ("data:\n  generation: [1]\n", "data.generation is a group")],
    ids=["prune", "data.generation"],
)
def test_a_group_given_a_value_is_one_line(yaml_text, fragment, tiny_model_dir, tmp_path, capsys):
    config, out = tmp_path / "config.yaml", tmp_path / "out"
    config.write_text(yaml_text)
    assert fragment in refusal(capsys, run_argv(tiny_model_dir, out, "--config", str(config)))
    assert not out.exists()


@pytest.mark.parametrize("size", ["9" * 400, "9" * 400 + "GB", "9" * 400 + ".5MB"], ids=["bytes", "GB", "fraction"])
def test_a_shard_size_of_400_digits_is_one_line(size, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    err = refusal(capsys, run_argv(tiny_model_dir, out, "--save_model", "true", "--save_shard_size", size))
    assert "save_shard_size (a 40" in err and "exceeds the largest file size" in err
    assert not out.exists()


def test_sizes_are_exact_for_long_numbers():
    assert size_in_bytes("1.5GB") == 1_500_000_000
    assert size_in_bytes(str(2**63 - 1)) == 2**63 - 1
    with pytest.raises(ConfigError, match="exceeds the largest file size"):
        size_in_bytes(2**63)


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (("--wandb.project", "a/b"), "wandb.project 'a/b' must be 1 to 128 characters without any of"),
        (("--wandb.tags", "[" + ",".join(["x" * 300] * 200) + "]"), "wandb.tags[0] is 300 characters"),
        (("--wandb.mode", "online"), "wandb.mode online needs a W&B API key"),
    ],
    ids=["project", "tags", "online-without-key"],
)
def test_wandb_settings_wandb_would_refuse_are_refused_first(flags, fragment, tiny_model_dir, tmp_path, capsys):
    os.environ.pop("WANDB_API_KEY", None)  # the test environment has no key; make sure of it
    out = tmp_path / "out"
    env = {"NETRC": str(tmp_path / "no-netrc"), "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert fragment in refusal(capsys, run_argv(tiny_model_dir, out, *flags))
    assert not out.exists()


# --- YAML that would recurse, and files that are not files ---------------------------------------------


@pytest.mark.parametrize("depth", [700, 5000, 20_000])
def test_deep_yaml_is_refused_before_recursion(depth, tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "deep.yaml"
    config.write_text("a: " + "[" * depth + "]" * depth + "\n")
    err = refusal(capsys, run_argv(tiny_model_dir, tmp_path / "out", "--config", str(config)))
    assert f"nests lists and mappings more than {MAX_DEPTH} deep" in err


@pytest.mark.parametrize("text", ["a: &x [*x]\n", "a: &x {b: [1, *x]}\n"], ids=["list", "mapping"])
def test_an_alias_cycle_is_refused(text, tiny_model_dir, tmp_path, capsys):
    config = tmp_path / "cycle.yaml"
    config.write_text(text)
    err = refusal(capsys, run_argv(tiny_model_dir, tmp_path / "out", "--config", str(config)))
    assert "an alias refers to a list or mapping that holds it (a cycle)" in err


def test_depth_counts_what_aliases_bring():
    nested = "[" * 40 + "]" * 40
    with pytest.raises(YamlLimitError, match="more than 64 deep"):
        load_yaml_text(f"x: &a {nested}\ny: &b [*a]\nz: {'[' * 30}*b{']' * 30}\n")
    assert load_yaml_text("a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))


def test_a_fifo_or_device_as_config_is_refused_without_reading(tiny_model_dir, tmp_path, capsys):
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        err = refusal(capsys, run_argv(tiny_model_dir, tmp_path / "out", "--config", str(path)))
        assert f"--config {path} is not a regular file" in err
