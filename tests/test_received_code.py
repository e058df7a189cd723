"""Code runs only where this invocation's command line asks for it: a received run folder, a --config
YAML or a sweep file that turns on model.trust_remote_code or names an eval.include_path with a
`!function` task gets a warning line (or, for --resume, a one-line refusal), and its code never runs.
Each test plants the request it is named after; the planted code leaves a file behind if it runs."""

import json
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from lp_prune.cli import main
from lp_prune.storage.files import read_json
from lp_prune.tracking import RunDirectory
from quiz_tasks import write_quiz_task
from stopped_runs import stop_while_saving

SMALL = [
    "--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2",
    "--data.eval_windows", "1", "--data.eval_seqlen", "32", "--data.eval_languages", "[en]",
    "--wandb.mode", "disabled",
]  # fmt: skip
QUESTIONS = [("The sky is", ["blue", "green"], 0), ("Water is", ["dry", "wet"], 1)]


@pytest.fixture(scope="module")
def marks(tmp_path_factory) -> dict[str, Path]:
    """Where the planted code leaves its file when it runs: the model's code, the task's code."""
    folder = tmp_path_factory.mktemp("marks")
    return {"model": folder / "model-code-ran", "task": folder / "task-code-ran"}


@pytest.fixture(autouse=True)
def _no_marks(marks):
    for mark in marks.values():
        mark.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def custom_code_model(tmp_path_factory, marks) -> Path:
    """The tiny Llama folder plus its own Python code (auto_map), which leaves a file when it runs."""
    from conftest import save_tiny_model

    folder = save_tiny_model(tmp_path_factory.mktemp("custom-code") / "custom_code_model")
    (folder / "planted_model.py").write_text(
        textwrap.dedent(f"""
        from pathlib import Path
        from transformers import LlamaConfig, LlamaForCausalLM
        Path({str(marks["model"])!r}).touch()
        class PlantedConfig(LlamaConfig):
            pass
        class PlantedModel(LlamaForCausalLM):
            config_class = PlantedConfig
            def __init__(self, config):
                Path({str(marks["model"])!r}).touch()  # every load, not only the first import
                super().__init__(config)
        """)
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "planted_model.PlantedConfig",
        "AutoModelForCausalLM": "planted_model.PlantedModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _task_folder(folder: Path, task: str, function: str | None) -> Path:
    return write_quiz_task(folder, task, QUESTIONS, function)


@pytest.fixture(scope="module")
def quiz_tasks(tmp_path_factory) -> Path:
    """The user's own task folder: no code in it."""
    return _task_folder(tmp_path_factory.mktemp("quiz") / "tasks", "quiz", None)


@pytest.fixture(scope="module")
def planted_tasks(tmp_path_factory, marks) -> Path:
    """A received task folder whose task names a Python function (`!function`), which leaves a file."""
    folder = _task_folder(tmp_path_factory.mktemp("planted") / "tasks", "planted_quiz", "planted_code.process_docs")
    (folder / "planted_code.py").write_text(
        f"from pathlib import Path\nPath({str(marks['task'])!r}).touch()\n\n"
        f"def process_docs(dataset):\n    Path({str(marks['task'])!r}).touch()\n    return dataset\n"
    )
    return folder


def _isolated(patch: pytest.MonkeyPatch, cache: Path) -> None:
    patch.setenv("LP_PRUNE_CACHE", str(cache))
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("WANDB_MODE", "offline")


@pytest.fixture(scope="module")
def complete_run(custom_code_model, tmp_path_factory) -> Path:
    """A complete Wanda run of the custom-code model made without its code (masks only: the dense model
    is loaded again to rebuild it)."""
    out = tmp_path_factory.mktemp("complete") / "run"
    with pytest.MonkeyPatch.context() as patch:
        _isolated(patch, tmp_path_factory.mktemp("cache"))
        args = ["run", "--model.name", str(custom_code_model), "--out", str(out), "--prune.method", "wanda"]
        assert main([*args, *SMALL]) == 0
    return out


@pytest.fixture(scope="module")
def unfinished_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A run that stopped while saving (a full disk): RUNNING, with every layer in progress/."""
    out = tmp_path_factory.mktemp("unfinished") / "run"
    args = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), "--prune.method", "wanda"]
    with pytest.MonkeyPatch.context() as patch:
        _isolated(patch, tmp_path_factory.mktemp("cache"))
        stop_while_saving(lambda: main([*args, *SMALL, "--eval.perplexity", "false"]))
    assert RunDirectory(out).status() == "RUNNING"
    return out


def received(run: Path, tmp_path: Path, **sections) -> Path:
    """A copy of `run` whose config.yaml and marker both ask for `sections` (as a colleague's would)."""
    copy = tmp_path / "received"
    shutil.copytree(run, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    marker = read_json(copy / "lp_prune_run.json")
    for section, values in sections.items():
        config[section].update(values)
        marker["started_with"]["config"][section].update(values)
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (copy / "lp_prune_run.json").write_text(json.dumps(marker))
    return copy


def received_yaml(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "received.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def fail_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("lp-prune: error:"), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


def warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]


# --- a received run folder ------------------------------------------------------------------------------


def test_eval_of_a_received_run_does_not_run_the_model_code_its_config_asks_for(
    complete_run, quiz_tasks, marks, tmp_path, caplog
):
    run = received(complete_run, tmp_path, model={"trust_remote_code": True})
    args = ["eval", str(run), "--tasks", "quiz", "--include_path", str(quiz_tasks), "--limit", "2", "--no_wandb"]
    assert main(args) == 0
    assert not marks["model"].exists()
    (line,) = [w for w in warnings(caplog) if "model.trust_remote_code" in w]
    assert str(run / "config.yaml") in line and "pass --trust_remote_code true" in line


def test_analyze_of_a_received_run_does_not_run_the_model_code_its_config_asks_for(
    complete_run, marks, tmp_path, caplog
):
    run = received(complete_run, tmp_path, model={"trust_remote_code": True})
    args = ["analyze", str(run), "--out", str(tmp_path / "analysis"), "--languages", "[en, sw]", "--no_wandb"]
    assert main([*args, "--windows", "1", "--seqlen", "16", "--batch_size", "1"]) == 0
    assert not marks["model"].exists()
    (line,) = [w for w in warnings(caplog) if "model.trust_remote_code" in w]
    assert "pass --trust_remote_code true" in line


def test_compare_of_a_received_run_says_its_config_asks_for_code(complete_run, planted_tasks, tmp_path, caplog):
    run = received(complete_run, tmp_path, model={"trust_remote_code": True}, eval={"include_path": str(planted_tasks)})
    assert main(["compare", str(run), "--out", str(tmp_path / "report"), "--no_wandb"]) == 0
    lines = [w for w in warnings(caplog) if "not honoured" in w]
    assert len(lines) == 2 and all(str(run / "config.yaml") in line for line in lines)


def test_resume_of_a_received_run_never_runs_the_task_code_its_config_names(
    unfinished_run, planted_tasks, marks, tmp_path, capsys
):
    run = received(unfinished_run, tmp_path, eval={"tasks": ["planted_quiz"], "include_path": str(planted_tasks)})
    code = main(["run", "--resume", str(run)])
    assert not marks["task"].exists()
    assert code == 2 and f"pass --eval.include_path {planted_tasks}" in fail_line(capsys)


def test_resume_runs_the_task_code_when_this_command_line_names_it(unfinished_run, planted_tasks, marks, tmp_path):
    tasks = {"tasks": ["planted_quiz"], "include_path": str(planted_tasks), "limit": 2}
    run = received(unfinished_run, tmp_path, eval=tasks)
    assert main(["run", "--resume", str(run), "--eval.include_path", str(planted_tasks)]) == 0
    assert marks["task"].exists()  # asked for here: the user's own choice


# --- a received --config file ---------------------------------------------------------------------------


def test_a_received_config_file_does_not_turn_on_model_code(custom_code_model, marks, tmp_path, caplog):
    config = received_yaml(tmp_path, {"model": {"trust_remote_code": True}})
    args = ["run", "--config", str(config), "--model.name", str(custom_code_model), "--out", str(tmp_path / "run")]
    assert main([*args, *SMALL, "--prune.method", "magnitude"]) == 0
    assert not marks["model"].exists()
    (line,) = [w for w in warnings(caplog) if "model.trust_remote_code" in w]
    assert "pass --model.trust_remote_code true" in line


def test_estimate_with_a_received_config_file_does_not_run_model_code(custom_code_model, marks, tmp_path, caplog):
    config = received_yaml(tmp_path, {"model": {"name": str(custom_code_model), "trust_remote_code": True}})
    assert main(["estimate", "--config", str(config)]) == 0
    assert not marks["model"].exists()
    assert any("model.trust_remote_code" in w for w in warnings(caplog))


def test_a_received_config_file_does_not_name_task_code(tiny_model_dir, planted_tasks, marks, tmp_path, capsys):
    eval_section = {"tasks": ["planted_quiz"], "include_path": str(planted_tasks), "limit": 2}
    config = received_yaml(tmp_path, {"eval": eval_section})
    args = ["run", "--config", str(config), "--model.name", str(tiny_model_dir), "--out", str(tmp_path / "run")]
    code = main([*args, *SMALL])
    assert not marks["task"].exists()
    assert code == 2  # without the folder the task is unknown: refused before any work
    assert "unknown task 'planted_quiz'" in fail_line(capsys)


# --- a sweep file ---------------------------------------------------------------------------------------


def test_a_run_a_wandb_agent_starts_does_not_turn_on_model_code(
    custom_code_model, marks, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(tmp_path / "config-run.yaml"))  # as wandb agent sets it
    args = [
        "run",
        "model.trust_remote_code=true",
        "--model.name",
        str(custom_code_model),
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*args, *SMALL, "--prune.method", "magnitude"]) == 0
    assert not marks["model"].exists()
    assert any("W&B sweep" in w and "model.trust_remote_code" in w for w in warnings(caplog))


def _sweep_file(tmp_path: Path, planted_tasks: Path, custom_code_model: Path) -> Path:
    sweep = {
        "name": "received",
        "method": "grid",
        "command": ["lp-prune", "run", "--model.trust_remote_code", "true", "${args}"],
        "parameters": {
            "model.name": {"value": str(custom_code_model)},
            "model.trust_remote_code": {"values": [True]},
            "eval": {"parameters": {"include_path": {"value": str(planted_tasks)}, "tasks": {"value": "planted_quiz"}}},
        },
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def test_a_sweep_file_does_not_turn_on_code_for_its_runs(planted_tasks, custom_code_model, tmp_path, capsys, caplog):
    from lp_prune.sweeps.expand import expand, load_sweep
    from lp_prune.sweeps.runner import local_argv, plan

    file = _sweep_file(tmp_path, planted_tasks, custom_code_model)
    assert main(["sweep", str(file), "--root", str(tmp_path / "runs"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "planted_quiz" in printed and "trust_remote_code" not in printed and "include_path" not in printed
    named = [w for w in warnings(caplog) if "sweep file" in w]
    assert len(named) == 2 and "pass --trust_remote_code true to lp-prune sweep" in named[0]
    sweep = load_sweep(file)
    (run,) = plan(sweep, expand(sweep), tmp_path / "runs")
    assert not [word for word in local_argv(run, sweep) if "trust_remote_code" in word or "include_path" in word]


def test_lp_prune_sweeps_own_flags_allow_code_for_its_runs(planted_tasks, custom_code_model, tmp_path, monkeypatch):
    import lp_prune.commands.sweep
    import lp_prune.sweeps.runner
    from lp_prune.sweeps.runner import local_argv

    seen = []
    monkeypatch.setattr(lp_prune.sweeps.runner, "execute", lambda runs, sweep, parallel: seen.append((runs, sweep)))
    monkeypatch.setattr(lp_prune.commands.sweep, "report", lambda *args: 0)
    file = _sweep_file(tmp_path, planted_tasks, custom_code_model)
    args = ["sweep", str(file), "--root", str(tmp_path / "runs"), "--trust_remote_code", "true"]
    assert main([*args, "--include_path", str(planted_tasks)]) == 0
    ((run,), sweep), *_ = seen
    argv = local_argv(run, sweep)
    assert argv[-2:] == ["--model.trust_remote_code=true", f"--eval.include_path={json.dumps([str(planted_tasks)])}"]
