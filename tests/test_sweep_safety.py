"""Sweep files are input: their command may only start lp-prune's `run`, and bad values get one line."""

import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

import lp_prune
from lp_prune.cli import main
from lp_prune.config.hub import HUB
from lp_prune.errors import ConfigError
from lp_prune.sweeps import runner
from lp_prune.sweeps.expand import expand, load_sweep
from lp_prune.sweeps.runner import local_argv, plan, validate_runs

SHIPPED_SWEEPS = sorted((HUB / "sweeps").glob("*.yaml"))
ENTRY_POINT = str(Path(lp_prune.__file__).with_name("__main__.py"))


def write_sweep(tmp_path, body: dict) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def sweep_body(command=None, method="grid", **parameters) -> dict:
    body = {"name": "t", "method": method, "parameters": parameters or {"seed": {"values": [1]}}}
    if command is not None:
        body["command"] = command
    return body


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


# --- the command ----------------------------------------------------------------------------------


def test_a_shell_command_is_refused_before_anything_runs(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    path = write_sweep(tmp_path, sweep_body(["/bin/sh", "-c", f"touch {marker}", "run"]))
    assert main(["sweep", str(path), "--root", str(tmp_path / "runs")]) == 2
    assert not marker.exists()
    line = error_line(capsys)
    assert line.startswith("lp-prune: error: sweep command [/bin/sh -c ") and "'/bin/sh' is not lp-prune" in line


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (["python", "evil.py", "run", "${args}"], "'python' is not lp-prune"),
        (["${env}", "bash", "run", "${args}"], "'/usr/bin/env' is not lp-prune"),
        (["lp-prune", "extra", "run", "${args}"], "the subcommand must be run, found 'extra'"),
        (["lp-prune", "eval", "${args}"], "the subcommand must be run, found 'eval'"),
        (["lp-prune"], "the subcommand must be run, found nothing"),
        (["${env}", "lp-prune", "run", "stray", "${args}"], "'stray' is not an option"),
        (["lp-prune", "run", "--config", "c.yaml", "then", "${args}"], "'then' is not an option"),
        (["lp-prune", "run", "--", "${args}"], "'--' is not an option"),
        (["lp-prune", "run", "${args_json}"], "is not an option"),
        (["python", "-m", "other", "run", "${args}"], "'python' is not lp-prune"),
        (["${interpreter}", "${program}", "run", "${args}"], "'python' is not lp-prune"),  # no program given
    ],
)
def test_commands_other_than_lp_prune_run_are_refused(tmp_path, command, reason):
    sweep = load_sweep(write_sweep(tmp_path, sweep_body(command)))
    with pytest.raises(ConfigError, match=r"sweep command .* is refused") as caught:
        validate_runs(plan(sweep, expand(sweep), tmp_path), sweep)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("command", "program"),
    [
        (["lp-prune", "run", "${args}"], None),
        (["${env}", "lp-prune", "run", "--config", "configs/default.yaml", "${args}"], None),
        (["/usr/bin/env", "lp-prune", "run", "${args_no_boolean_flags}"], None),
        (["python", "-m", "lp_prune", "run", "${args}"], None),
        (["${env}", "${interpreter}", "-m", "lp_prune", "run", "${args}"], None),
        (["${env}", "${interpreter}", "${program}", "run", "${args}"], ENTRY_POINT),
    ],
)
def test_every_form_of_lp_prune_run_starts_this_lp_prune(tmp_path, command, program):
    body = sweep_body(command, **{"seed": {"values": [3]}})
    if program:
        body["program"] = program
    sweep = load_sweep(write_sweep(tmp_path, body))
    runs = plan(sweep, expand(sweep), tmp_path)
    validate_runs(runs, sweep)
    argv = local_argv(runs[0], sweep)
    assert argv[:4] == [sys.executable, "-m", "lp_prune", "run"]  # never a shell, never another program
    assert "--seed=3" in argv and f"--out={runs[0].out}" in argv


@pytest.mark.parametrize("path", SHIPPED_SWEEPS, ids=lambda path: path.name)
def test_every_shipped_sweep_still_plans(path, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty folder: the files' configs/ paths are the packaged ones
    assert main(["sweep", f"sweeps/{path.name}", "--root", "runs", "--dry-run"]) == 0, capsys.readouterr().err
    assert "to run" in capsys.readouterr().out


# --- what a finished process left ------------------------------------------------------------------


class RecordingPopen:
    """Stands in for subprocess.Popen: records argv, 'exits' at once, and writes what `status` says."""

    calls: ClassVar[list[list[str]]] = []
    status: ClassVar[str | None] = None  # what the finished run leaves in its status file (None: no folder at all)

    def __init__(self, argv, **_kwargs):
        self.calls.append(list(argv))
        self.returncode = 0
        out = next((Path(a.split("=", 1)[1]) for a in argv if a.startswith("--out=")), None)
        if "--resume" in argv:
            out = Path(argv[argv.index("--resume") + 1])
        if self.status and out:
            out.mkdir(parents=True, exist_ok=True)
            (out / "status").write_text(self.status + "\n")

    def poll(self):
        return self.returncode


@pytest.fixture
def fake_popen(monkeypatch):
    RecordingPopen.calls = []
    RecordingPopen.status = None
    monkeypatch.setattr(runner.subprocess, "Popen", RecordingPopen)
    return RecordingPopen


def test_exit_zero_without_a_complete_run_directory_counts_as_failed(tmp_path, capsys, fake_popen):
    path = write_sweep(tmp_path, sweep_body(["lp-prune", "run", "${args}"]))
    assert main(["sweep", str(path), "--root", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    assert "holds no COMPLETE run" in out and "Sweep t: 0/1 complete" in out, out
    assert len(fake_popen.calls) == 1


def test_a_run_that_completes_counts_as_complete(tmp_path, capsys, fake_popen):
    fake_popen.status = "COMPLETE"
    path = write_sweep(tmp_path, sweep_body(["lp-prune", "run", "${args}"]))
    assert main(["sweep", str(path), "--root", str(tmp_path / "runs")]) == 0
    assert "Sweep t: 1/1 complete" in capsys.readouterr().out


# --- resuming an interrupted run -----------------------------------------------------------------


def planted_run(tmp_path, with_config: bool = True) -> tuple[Path, Path]:
    """A sweep file and the folder of its one run, left RUNNING as an interrupted run leaves it."""
    path = write_sweep(tmp_path, sweep_body(["lp-prune", "run", "${args}"]))
    sweep = load_sweep(path)
    (run,) = plan(sweep, expand(sweep), tmp_path / "runs")
    run.out.mkdir(parents=True)
    (run.out / "status").write_text("RUNNING\n")
    if with_config:
        (run.out / "config.yaml").write_text("seed: 1\n")
    return path, run.out


def test_an_interrupted_run_resumes_instead_of_starting_again(tmp_path, capsys, fake_popen):
    fake_popen.status = "COMPLETE"
    path, out = planted_run(tmp_path)
    assert main(["sweep", str(path), "--root", str(tmp_path / "runs"), "--dry-run"]) == 0
    assert "1 to run (1 continue where they stopped)" in capsys.readouterr().out
    assert main(["sweep", str(path), "--root", str(tmp_path / "runs")]) == 0
    assert fake_popen.calls == [[sys.executable, "-m", "lp_prune", "run", "--resume", str(out)]]
    assert "(resumes)" in capsys.readouterr().out


def test_a_running_folder_without_config_starts_afresh(tmp_path, fake_popen):
    fake_popen.status = "COMPLETE"
    path, out = planted_run(tmp_path, with_config=False)
    assert main(["sweep", str(path), "--root", str(tmp_path / "runs")]) == 0
    (argv,) = fake_popen.calls
    assert "--resume" not in argv and f"--out={out}" in argv


# --- values of the sweep file --------------------------------------------------------------------


def random_body(spec: dict, **top) -> dict:
    return {"name": "r", "method": "random", "run_cap": 2, "parameters": {"prune.sparsity": spec}, **top}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (sweep_body(**{"seed": {"values": 5}}), "sweep parameter 'seed': 'values' must be a non-empty list"),
        (sweep_body(**{"seed": {"values": []}}), "sweep parameter 'seed': 'values' must be a non-empty list"),
        (random_body({"values": [0.5]}, run_cap="lots"), "'run_cap' must be a positive whole number of runs"),
        (random_body({"values": [0.5]}, run_cap=0), "'run_cap' must be a positive whole number of runs"),
        (
            random_body({"distribution": "log_uniform_values", "min": 0, "max": 0.5}),
            "sweep parameter 'prune.sparsity': log_uniform_values needs min > 0, got 0",
        ),
        (
            random_body({"distribution": "q_log_uniform_values", "min": -1, "max": 0.5, "q": 0.1}),
            "q_log_uniform_values needs min > 0, got -1",
        ),
        (
            random_body({"values": [0.3, 0.5], "probabilities": [0.2, 0.3, 0.5]}),
            "sweep parameter 'prune.sparsity': 3 probabilities for 2 values",
        ),
        (random_body({"values": [0.3, 0.5], "probabilities": [0.2, 0.3]}), "probabilities sum to 0.5, not 1"),
        (random_body({"values": [0.3, 0.5], "probabilities": [1.5, -0.5]}), "probabilities cannot be negative"),
        (random_body({"values": [0.3], "probabilities": ["all"]}), "'probabilities' must be a list of numbers"),
        (
            random_body({"distribution": "uniform", "min": "a", "max": 0.5}),
            "sweep parameter 'prune.sparsity': min must be a number, got 'a'",
        ),
        (random_body({"distribution": "uniform", "min": 0.1, "max": True}), "max must be a number, got True"),
        (
            random_body({"distribution": "uniform", "min": 0.6, "max": 0.2}),
            "sweep parameter 'prune.sparsity': min 0.6 is greater than max 0.2",
        ),
        (random_body({"distribution": "int_uniform", "min": 1.5, "max": 3}), "int_uniform needs whole-number"),
        (random_body({"distribution": "q_uniform", "min": 0, "max": 1, "q": 0}), "q must be a positive number"),
        (random_body({"distribution": "normal", "sigma": -1}), "sigma cannot be negative"),
        (random_body({"distribution": "uniform"}), "distribution uniform needs 'min' and 'max'"),
        (random_body({"distribution": "beta"}), "distribution 'beta' is not one of: constant, categorical"),
        (random_body({"distribution": "constant"}), "distribution constant needs 'value'"),
        (random_body({"distribution": "categorical"}), "distribution categorical needs 'values'"),
        (sweep_body("lp-prune run"), "'command' must be a list such as [${env}, lp-prune, run, ${args}]"),
        ({**sweep_body(), "program": ["x"]}, "'program' must be a file name"),
        ({"name": "t", "parameters": {"prune": {"parameters": 3}}}, "'prune': 'parameters' must be a mapping"),
    ],
)
def test_bad_sweep_values_get_one_line(tmp_path, capsys, body, message):
    path = write_sweep(tmp_path, body)
    assert main(["sweep", str(path), "--root", str(tmp_path / "runs"), "--dry-run"]) == 2
    assert message in error_line(capsys)


def test_count_must_be_positive(tmp_path, capsys):
    path = write_sweep(tmp_path, random_body({"values": [0.5]}))
    assert main(["sweep", str(path), "--count", "-1", "--dry-run"]) == 2
    assert "--count must be at least 1, got -1" in error_line(capsys)


def test_yaml_limits_apply_to_sweep_files(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text("name: t\nname: u\nparameters: {seed: {values: [1]}}\n")
    assert main(["sweep", str(path), "--dry-run"]) == 2
    assert "key 'name' appears twice" in error_line(capsys)
    assert main(["sweep", str(tmp_path / "missing.yaml"), "--dry-run"]) == 2
    assert "cannot read sweep file" in error_line(capsys)


def test_valid_random_specs_still_load(tmp_path):
    body = random_body({"distribution": "q_log_uniform_values", "min": 0.01, "max": 0.5, "q": 0.01})
    body["parameters"]["data.calibration_language"] = {"values": ["en", "sw"], "probabilities": [0.25, 0.75]}
    draws = expand(load_sweep(write_sweep(tmp_path, body)), count=50)
    assert all(0.0 <= d["prune.sparsity"] <= 0.5 for d in draws)


def test_a_signal_to_the_sweep_reaches_its_running_runs(tmp_path, monkeypatch):
    import signal
    import threading

    from lp_prune.cli import stop_on_signals
    from lp_prune.errors import Interrupted

    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def sleeping_run(argv, **kwargs):
        process = real_popen([sys.executable, "-c", "import time; time.sleep(120)"], **kwargs)
        started.append(process)
        return process

    monkeypatch.setattr(runner.subprocess, "Popen", sleeping_run)
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(
        "name: s\nmethod: grid\ncommand: [lp-prune, run, '${args}']\nparameters:\n  seed: {values: [0, 1]}\n"
    )
    sweep = load_sweep(sweep_file)
    runs = runner.plan(sweep, expand(sweep, None, 0), tmp_path / "runs")
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    with pytest.raises(Interrupted), stop_on_signals():
        runner.execute(runs, sweep, parallel=2)
    assert len(started) == 2
    assert all(process.returncode == -signal.SIGTERM for process in started)
