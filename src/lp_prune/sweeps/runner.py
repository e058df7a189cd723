"""Run a sweep locally: every combination as its own `lp-prune run` process, offline W&B.

Runs land in `<root>/<sweep name>/<run name>`; a run whose directory is COMPLETE is skipped and an
interrupted one (RUNNING, with its config.yaml) continues with `lp-prune run --resume`, so a sweep
started again picks up where it stopped. Arguments travel as a list, never through a shell.

A sweep file is data, yet its `command` is a program to start: the runner only ever starts
lp-prune's own `run` (the one program the file may name), so a file from elsewhere cannot run
anything else on this machine.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import lp_prune
from lp_prune.config import RunConfig
from lp_prune.config.code_options import without_code_words
from lp_prune.config.method_keys import method_settings
from lp_prune.errors import ConfigError, Interrupted
from lp_prune.pruning.method import PruningMethod
from lp_prune.reporting import format_sweep_line, sweep_eta
from lp_prune.storage.files import PlantedLink, checked_folder, open_no_follow, refuse_link
from lp_prune.sweeps.expand import Sweep, agent_command
from lp_prune.tracking import RunDirectory
from lp_prune.tracking.run_dir import STATUS_RUNNING

ENV = "/usr/bin/env"  # what ${env} becomes
INTERPRETERS = ("python", "python3")  # ${interpreter} is `python`
ENTRY_POINT = Path(lp_prune.__file__).with_name("__main__.py")  # the `${program}` that is lp-prune
LOCAL_LAUNCHER = [sys.executable, "-m", "lp_prune"]  # lp-prune in this environment, without relying on PATH
ACCEPTED_COMMANDS = (
    "lp-prune run, ${env} lp-prune run, python -m lp_prune run, or ${interpreter} ${program} run"
    " with program lp_prune/__main__.py, followed by --key=value options (or key=value: ${args_no_hyphens})"
)
OPTION = re.compile(r"^--[A-Za-z]")


@dataclass
class PlannedRun:
    name: str
    params: dict[str, Any]
    argv: list[str]  # what a W&B agent would run
    out: Path

    @property
    def complete(self) -> bool:
        return RunDirectory(self.out).is_complete()

    @property
    def status(self) -> str:
        return RunDirectory(self.out).status() or ("incomplete" if self.out.exists() else "new")

    @property
    def resumable(self) -> bool:
        """Interrupted after it wrote its config: `--resume` continues from its last finished layer."""
        run_dir = RunDirectory(self.out)
        return run_dir.status() == STATUS_RUNNING and run_dir.config.is_file()


def config_keys(config: Any = None, prefix: str = "") -> set[str]:
    """Every dotted key a run config accepts, e.g. 'data.nsamples' and the registered methods' settings
    under prune ('prune.blocksize'), plus 'config' for YAML files."""
    config = RunConfig() if config is None else config
    keys = set() if prefix else {"config", *(f"prune.{key}" for key in method_settings())}
    for item in fields(config):
        value = getattr(config, item.name)
        keys.add(prefix + item.name)
        if is_dataclass(value) and not isinstance(value, PruningMethod):
            keys |= config_keys(value, f"{prefix}{item.name}.")
    return keys


def is_config_key(key: str) -> bool:
    return key in config_keys() or key.startswith("data.files.")


def run_name(params: dict[str, Any]) -> str:
    """Readable and unique: the values joined, plus a hash of the full parameter set."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    shown = (f"{v:.4g}" if isinstance(v, float) else str(v) for v in params.values())
    values = "-".join(re.sub(r"[^A-Za-z0-9.]+", "_", v).strip("_") for v in shown)
    return f"{values[:80]}-{digest}" if values else digest


def plan(sweep: Sweep, combinations: list[dict[str, Any]], root: Path) -> list[PlannedRun]:
    """The runs of `combinations`; their commands never carry an option that runs code (a sweep file
    does not ask for code: config.code_options), only the sweep's own code_flags are added when they start."""
    check_parameters(sweep)
    sweep_dir = root / sweep.name
    return [
        PlannedRun(
            run_name(params), params, without_code_words(agent_command(sweep, params))[0], sweep_dir / run_name(params)
        )
        for params in combinations
    ]


def check_parameters(sweep: Sweep) -> None:
    for key in sweep.parameters:
        if not is_config_key(key):
            raise ConfigError(f"sweep parameter '{key}' is not a config key (see `lp-prune run --help`)")


def local_argv(run: PlannedRun, sweep: Sweep) -> list[str]:
    """The agent's command as this environment's `lp-prune run`, plus where to write and how to group in W&B.

    Whichever accepted form the file uses, the process started is `python -m lp_prune` of this very
    interpreter: the same program a W&B agent would start, without relying on PATH.
    """
    tags = json.dumps([sweep.name])
    project = [f"--wandb.project={sweep.project}"] if sweep.project else []  # as in a W&B sweep
    options = run_options(run.argv, sweep)
    extras = [f"--out={run.out}", *project, f"--wandb.group={sweep.name}", f"--wandb.tags={tags}"]
    return [*LOCAL_LAUNCHER, "run", *options, *extras, *sweep.code_flags]


def launch_argv(run: PlannedRun, sweep: Sweep) -> list[str]:
    """What starts `run` here: an interrupted run resumes in its folder, any other starts afresh."""
    if run.resumable:
        return [*LOCAL_LAUNCHER, "run", "--resume", str(run.out), *sweep.code_flags]
    return local_argv(run, sweep)


def run_options(argv: list[str], sweep: Sweep) -> list[str]:
    """The options after `run` when the agent's `argv` is lp-prune's `run`; anything else is a ConfigError."""
    start = _launcher_length(argv)
    if start is None:
        raise _not_lp_prune_run(sweep, f"{argv[0]!r} is not lp-prune" if argv else "the command is empty")
    if argv[start : start + 1] != ["run"]:
        found = repr(argv[start]) if start < len(argv) else "nothing"
        raise _not_lp_prune_run(sweep, f"the subcommand must be run, found {found}")
    from lp_prune.cli_support import hyphenated

    options = hyphenated(argv[start + 1 :], is_config_key)  # `${args_no_hyphens}`: key=value words
    _check_options(options, sweep)
    return options


def _launcher_length(argv: list[str]) -> int | None:
    """How many leading words start lp-prune (`lp-prune`, `python -m lp_prune`, ...), or None."""
    start = 1 if argv[:1] == [ENV] else 0
    head = argv[start:]
    if head[:1] == ["lp-prune"]:
        return start + 1
    if not head or head[0] not in (*INTERPRETERS, sys.executable):
        return None
    if head[1:3] == ["-m", "lp_prune"]:
        return start + 3
    if len(head) > 1 and _is_entry_point(head[1]):
        return start + 2
    return None


def _is_entry_point(program: str) -> bool:
    try:
        return Path(program).resolve() == ENTRY_POINT.resolve()
    except (OSError, RuntimeError):  # a symlink loop, depending on the Python version
        return False


def _check_options(options: list[str], sweep: Sweep) -> None:
    """Only `--key=value` and `--key value`: a stray word would reach `run` as a positional."""
    takes_value = False
    for word in options:
        if OPTION.match(word):
            takes_value = "=" not in word
        elif takes_value:
            takes_value = False
        else:
            raise _not_lp_prune_run(sweep, f"{word!r} is not an option (--key=value or --key value)")


def _not_lp_prune_run(sweep: Sweep, reason: str) -> ConfigError:
    command = " ".join(repr(part) if re.search(r"\s", part) or not part else part for part in sweep.command)
    return ConfigError(f"sweep command [{command}] is refused: {reason}; it must be {ACCEPTED_COMMANDS}")


def run_configs(runs: list[PlannedRun], sweep: Sweep) -> list[Any]:
    """Every run's RunConfig as its command would build it, checked, before the first run starts."""
    from lp_prune.cli_support import command_parser, one_line
    from lp_prune.commands import run as run_command
    from lp_prune.config import run_config_from

    parser = command_parser(run_command)
    configs = []
    for run in runs:
        arguments = local_argv(run, sweep)[len(LOCAL_LAUNCHER) + 1 :]  # the options after `run`
        try:
            parsed = parser.instantiate_classes(parser.parse_args(arguments))
        except Exception as err:  # jsonargparse raises several types; all mean a bad value
            raise ConfigError(f"sweep run {run.name}: {one_line(err)}") from None
        config = run_config_from(parsed)
        config.validate()
        configs.append(config)
    return configs


def validate_runs(runs: list[PlannedRun], sweep: Sweep) -> None:
    """Check every run's command and config before the first one starts."""
    run_configs(runs, sweep)


def execute(runs: list[PlannedRun], sweep: Sweep, parallel: int = 1) -> list[RunOutcome]:
    """Run what is not complete yet, `parallel` at a time; return how each started run ended.

    Prints a line when a run starts and one when it ends: i/N, name, status, time, ETA of the rest.
    """
    todo = [run for run in runs if not run.complete]
    return execute_stream(iter(todo), len(todo), sweep, parallel)


def execute_stream(
    todo: Iterator[PlannedRun], total: int, sweep: Sweep, parallel: int = 1, live: set[str] | None = None
) -> list[RunOutcome]:
    """`execute` for runs chosen one at a time (a bayes sweep): the next run is taken from `todo` only
    when a slot is free, so it is chosen knowing every run finished by then; `live` holds the names of
    the runs running meanwhile. A ConfigError while choosing (or a planted link where the next run
    would write) lets the running runs end first."""
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    progress = _Progress(total, parallel)
    running: list[_Started] = []
    outcomes: list[RunOutcome] = []
    live = set() if live is None else live
    try:
        for index in itertools.count(1):
            while len(running) >= parallel:
                outcomes += _reap(running, progress, live)
                time.sleep(0.2)
            try:
                run = next(todo, None)
                if run is None:
                    break
                argv = launch_argv(run, sweep)
                log_path = run.out.parent / f"{run.name}.log"
                log = _open_log(run, log_path)  # closed in _reap
            except (ConfigError, PlantedLink):
                while running:
                    outcomes += _reap(running, progress, live)
                    time.sleep(0.2)
                raise
            resumes = " (resumes)" if run.resumable else ""
            print(f"start {index}/{total}: {run.name}{resumes} (log: {log_path})", flush=True)
            process = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
            running.append(_Started(run, process, log, time.monotonic()))
            live.add(run.name)
        while running:
            outcomes += _reap(running, progress, live)
            time.sleep(0.2)
    except Interrupted as stop:
        _pass_on(stop.signum, running)
        raise
    return outcomes


def _open_log(run: PlannedRun, log_path: Path) -> Any:
    """The run's log file in its sweep folder. The sweep folder, the run's folder and the log are never
    symbolic links (a received sweep folder may hold planted ones): PlantedLink instead."""
    sweep_dir = run.out.parent
    checked_folder(sweep_dir, sweep_dir.parent)
    refuse_link(run.out)
    return os.fdopen(open_no_follow(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w")


def _pass_on(signum: int, running: list[_Started]) -> None:
    """A signal to the sweep reaches its runs (`kill` sends it to this process only): each stops
    resumably, and running the sweep again continues them."""
    for item in running:
        if item.process.poll() is None:
            item.process.send_signal(signum)
    for item in running:
        item.process.wait()
        item.log.close()
        print(f"stopped: {item.run.name} (resumes when the sweep runs again)", flush=True)


@dataclass
class RunOutcome:
    run: PlannedRun
    exit_code: int
    complete: bool  # its run directory says COMPLETE once the process has ended

    @property
    def succeeded(self) -> bool:
        # An exit code of 0 alone is not enough: only a COMPLETE run directory holds results to compare.
        return self.exit_code == 0 and self.complete


@dataclass
class _Started:
    run: PlannedRun
    process: subprocess.Popen
    log: Any
    start: float


@dataclass
class _Progress:
    total: int
    parallel: int
    durations: list[float] = field(default_factory=list)

    def finished(self, run: PlannedRun, seconds: float, status: str) -> str:
        self.durations.append(seconds)
        remaining = self.total - len(self.durations)
        eta = sweep_eta(self.durations, remaining, self.parallel)
        return format_sweep_line(len(self.durations), self.total, run.name, status, seconds, eta)


def _reap(running: list[_Started], progress: _Progress, live: set[str]) -> list[RunOutcome]:
    done = [item for item in running if item.process.poll() is not None]
    outcomes = []
    for item in done:
        running.remove(item)
        live.discard(item.run.name)
        item.log.close()
        outcome = RunOutcome(item.run, item.process.returncode, item.run.complete)
        print(progress.finished(item.run, time.monotonic() - item.start, _ended_status(outcome, item)), flush=True)
        outcomes.append(outcome)
    return outcomes


def _ended_status(outcome: RunOutcome, item: _Started) -> str:
    if outcome.exit_code != 0:
        return f"FAILED (exit {outcome.exit_code}, see {item.log.name})"
    if not outcome.complete:
        return f"FAILED (exit 0 but {outcome.run.out} holds no COMPLETE run, see {item.log.name})"
    return outcome.run.status
