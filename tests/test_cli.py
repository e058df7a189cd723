"""Command-line conventions: Lightning's spellings of devices and precision, -c for --config, one spelling
of multi-word flags, a start without ML libraries for --help and --version, no git noise from eval."""

import json
import subprocess
import sys

import pytest

from lp_prune.cli import main
from lp_prune.cli_support import underscored
from lp_prune.commands import COMMANDS
from lp_prune.config import RunConfig
from lp_prune.errors import ConfigError
from lp_prune.launcher import apply_launcher_environment

ML_LIBRARIES = ("torch", "lightning", "transformers")


def imported_after(code: str) -> list[str]:
    """The ML libraries a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport sys; print(__import__('json').dumps([m for m in {ML_LIBRARIES!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cli_and_its_help_load_no_ml_library():
    assert imported_after("import lp_prune.cli") == []
    help_run = "from lp_prune.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert imported_after(help_run) == []
    assert imported_after("from lp_prune.cli import main; main(['--version'])") == []


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name, help_line in COMMANDS.items():
        assert name in text and " ".join(help_line.split()) in text


def test_multi_word_flags_have_one_spelling_and_take_the_other(capsys, monkeypatch):
    assert underscored(["sweep", "f.yaml", "--dry-run", "--no-wandb=true", "--data.files.hi-Latn", "a-b"]) == [
        "sweep",
        "f.yaml",
        "--dry_run",
        "--no_wandb=true",
        "--data.files.hi-Latn",
        "a-b",
    ]
    assert underscored(["run", "--", "--keep-me"]) == ["run", "--", "--keep-me"]
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "--dry_run" in text and "--dry-run" not in text
    from lp_prune.commands import sweep

    seen = []
    monkeypatch.setattr(sweep, "execute", lambda options: seen.append(options) or 0)
    assert (
        main(["sweep", "sweeps/languages-default.yaml", "--dry-run"])
        == main(["sweep", "sweeps/languages-default.yaml", "--dry_run"])
        == 0
    )
    assert [options.dry_run for options in seen] == [True, True]


@pytest.mark.parametrize(
    ("given", "devices", "processes", "on_the_cpu"),
    [
        ("auto", "auto", 1, "auto"),
        ("2", 2, 2, 2),
        ("[0,1]", [0, 1], 2, 2),
        ("0,1", [0, 1], 2, 2),
        ("3,", [3], 1, 1),
    ],
)
def test_devices_in_lightnings_spellings(monkeypatch, given, devices, processes, on_the_cpu):
    from lp_prune.commands import run

    seen = []
    monkeypatch.setattr(run, "execute", lambda options: seen.append(run.run_config_of(options)) or 0)
    assert main(["run", "--devices", given, "--accelerator", "cpu"]) == 0
    config = seen[0]
    config.validate()
    assert config.devices == devices and config.processes_per_machine == processes
    assert config.trainer_devices == on_the_cpu  # device ids name GPUs; on the CPU they count processes
    assert apply_launcher_environment(RunConfig(), {"LT_DEVICES": given}).devices == devices


@pytest.mark.parametrize("given", ["0", "-1", "two", "[0,0]", "[a]", "1.5"])
def test_a_bad_devices_value_is_one_line(capsys, given):
    assert main(["run", "--devices", given, "--wandb.mode", "disabled"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lp-prune: error: devices") and "\n" not in err


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("32-true", "float32"), ("bf16-true", "bfloat16"), ("16-true", "float16"), ("bf16-mixed", "bfloat16"),
     ("16-mixed", "float16"), ("64-true", "float64")],
)  # fmt: skip
def test_precision_sets_the_model_dtype(monkeypatch, precision, dtype):
    from lp_prune.commands import estimate, run

    seen = []
    monkeypatch.setattr(run, "execute", lambda options: seen.append(run.run_config_of(options)) or 0)
    assert main(["run", "--precision", precision]) == 0
    monkeypatch.setattr(estimate, "execute", lambda options: seen.append(run.run_config_of(options)) or 0)
    assert main(["estimate", "--precision", precision]) == 0
    assert [config.model.dtype for config in seen] == [dtype, dtype]


def test_an_unknown_or_contradicted_precision_is_one_line(capsys):
    assert main(["run", "--precision", "8-true"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "lp-prune: error: --precision '8-true' is not one of: 64, 64-true, 32, 32-true, bf16, bf16-true, "
        "bf16-mixed, 16, 16-true, 16-mixed"
    )
    assert main(["run", "--precision", "bf16-true", "--model.dtype", "float16"]) == 2
    assert "means model.dtype bfloat16, but model.dtype is float16" in capsys.readouterr().err


def test_a_run_in_double_precision(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from test_pipeline import run_cli

    flags = ("--precision", "64-true", "--prune.method", "wanda", "--eval.perplexity", "false", "--save_model", "true")
    assert run_cli(tiny_model_dir, tmp_path / "run", *flags, "--wandb.mode", "disabled", "--checkpoint", "false") == 0
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert saved.model.layers[0].mlp.up_proj.weight.dtype.itemsize == 8


def test_config_short_flag_is_checked_as_config(tmp_path, capsys):
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    assert main(["run", "-c", str(folder)]) == 2
    assert "is not a regular file" in capsys.readouterr().err


def test_eval_asks_git_quietly_outside_a_repository(tmp_path, monkeypatch, capfd):
    """lm-eval records the git commit with `git describe`, whose stderr said `fatal: not a git repository`
    outside one; inside lp_prune's lm-eval calls the question is asked quietly."""
    import lm_eval.evaluator

    from lp_prune.evaluation.downstream import _quiet_lm_eval

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # never the repository above
    original = lm_eval.evaluator.get_git_commit_hash
    with _quiet_lm_eval():
        assert lm_eval.evaluator.get_git_commit_hash() is None
    assert lm_eval.evaluator.get_git_commit_hash is original
    assert "fatal" not in capfd.readouterr().err


def test_launcher_devices_say_what_is_wrong():
    with pytest.raises(ConfigError, match=r"fabric run --devices 'many' is not one of"):
        apply_launcher_environment(RunConfig(), {"LT_DEVICES": "many"})
    assert apply_launcher_environment(RunConfig(), {"LT_DEVICES": "0,1", "LT_ACCELERATOR": "cpu"}).strategy == "ddp"
