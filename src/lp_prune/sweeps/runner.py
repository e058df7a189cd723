"""Run a sweep locally: every combination as its own `lp-prune run` process, offline W&B.

Runs land in `<root>/<sweep name>/<run name>`; a run whose directory is COMPLETE is skipped, so an
interrupted sweep continues where it stopped. Arguments travel as a list, never through a shell.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from lp_prune.config import RunConfig
from lp_prune.errors import ConfigError
from lp_prune.reporting import format_sweep_line, sweep_eta
from lp_prune.sweeps.expand import Sweep, agent_command
from lp_prune.tracking import RunDirectory

LAUNCHER_NAMES = ("lp-prune",)


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


def config_keys(config: Any = None, prefix: str = "") -> set[str]:
    """Every dotted key a run config accepts, e.g. 'data.nsamples' (plus 'config' for YAML files)."""
    config = RunConfig() if config is None else config
    keys = set() if prefix else {"config"}
    for item in fields(config):
        value = getattr(config, item.name)
        keys.add(prefix + item.name)
        if is_dataclass(value):
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
    check_parameters(sweep)
    sweep_dir = root / sweep.name
    return [
        PlannedRun(run_name(params), params, agent_command(sweep, params), sweep_dir / run_name(params))
        for params in combinations
    ]


def check_parameters(sweep: Sweep) -> None:
    for key in sweep.parameters:
        if not is_config_key(key):
            raise ConfigError(f"sweep parameter '{key}' is not a config key (see `lp-prune run --help`)")


def local_argv(run: PlannedRun, sweep: Sweep) -> list[str]:
    """The agent's argv made runnable here, plus where to write and how to group in W&B."""
    argv = list(run.argv)
    if argv and argv[0] == "/usr/bin/env":
        argv = argv[1:]
    if argv and argv[0] in LAUNCHER_NAMES:  # the same program, without relying on PATH
        argv = [sys.executable, "-m", "lp_prune", *argv[1:]]
    tags = json.dumps([sweep.name])
    project = [f"--wandb.project={sweep.project}"] if sweep.project else []  # as in a W&B sweep
    return [*argv, f"--out={run.out}", *project, f"--wandb.group={sweep.name}", f"--wandb.tags={tags}"]


def validate_runs(runs: list[PlannedRun], sweep: Sweep) -> None:
    """Parse and validate every run's config before the first one starts."""
    from lp_prune.cli import build_parser, one_line
    from lp_prune.config import run_config_from

    parser = build_parser()
    for run in runs:
        argv = local_argv(run, sweep)
        if "run" not in argv:
            raise ConfigError("the sweep command must call `lp-prune run` (see sweeps/*.yaml)")
        try:
            parsed = parser.instantiate_classes(parser.parse_args(argv[argv.index("run") :]))
        except Exception as err:  # jsonargparse raises several types; all mean a bad value
            raise ConfigError(f"sweep run {run.name}: {one_line(err)}") from None
        run_config_from(parsed.run).validate()


def execute(runs: list[PlannedRun], sweep: Sweep, parallel: int = 1) -> list[tuple[PlannedRun, int]]:
    """Run what is not complete yet, `parallel` at a time; return (run, exit code) per started run.

    Prints a line when a run starts and one when it ends: i/N, name, status, time, ETA of the rest.
    """
    todo = [run for run in runs if not run.complete]
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    progress = _Progress(len(todo), parallel)
    running: list[_Started] = []
    results: list[tuple[PlannedRun, int]] = []
    for index, run in enumerate(todo, 1):
        while len(running) >= parallel:
            results += _reap(running, progress)
            time.sleep(0.2)
        run.out.parent.mkdir(parents=True, exist_ok=True)
        log_path = run.out.parent / f"{run.name}.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed in _reap
        print(f"start {index}/{len(todo)}: {run.name} (log: {log_path})", flush=True)
        process = subprocess.Popen(local_argv(run, sweep), stdout=log, stderr=log, env=env)
        running.append(_Started(run, process, log, time.monotonic()))
    while running:
        results += _reap(running, progress)
        time.sleep(0.2)
    return results


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


def _reap(running: list[_Started], progress: _Progress) -> list[tuple[PlannedRun, int]]:
    done = [item for item in running if item.process.poll() is not None]
    for item in done:
        running.remove(item)
        item.log.close()
        code = item.process.returncode
        status = (item.run.status if code == 0 else None) or f"FAILED (exit {code}, see {item.log.name})"
        print(progress.finished(item.run, time.monotonic() - item.start, status), flush=True)
    return [(item.run, item.process.returncode) for item in done]
