"""W&B sweep files, without a W&B server: the sweep configuration, its search, the agent's command.

The same YAML runs two ways: `wandb sweep FILE` + `wandb agent` (the W&B server's sweep controller
picks each run's parameters), or `lp-prune sweep FILE`, which picks them here with the controller's
own search library (PyPI `sweeps`, lp_prune.sweeps.wandb_search) and builds for each run the command
line a W&B agent would run:

- `method: grid`: every combination of the parameters' `values` (a single `value`, an `int_uniform`
  or `q_uniform` range) in the controller's order: parameters sorted by name, the last one varying
  fastest. Continuous distributions and `probabilities` are refused in a grid, as by W&B.
- `method: random`: `count` (or the file's `run_cap`) independent draws, seeded: `values` uniformly
  or with `probabilities`; distributions `uniform`, `int_uniform`, `q_uniform`, `log_uniform_values`,
  `q_log_uniform_values`, `normal`, `q_normal`, `log_normal`, `categorical`, `constant`.
- `method: bayes`: the controller's Bayesian optimisation of the file's `metric` (name, goal), each
  run chosen from the finished runs' metrics (lp_prune.sweeps.bayes runs it), so it needs `sweeps`.
- Without `sweeps` installed, grid and random are expanded by the code below with the same
  semantics (the same grid in the same order; random draws of the same distributions, not the same
  values as the library's for a seed).
- Parameters are config keys in dotted form (`data.calibration_language`, `prune.method`) or nested
  (`data: {parameters: {nsamples: ...}}`). Each spec is checked when the file loads (`values` a
  list, `probabilities` matching it, numeric bounds with min <= max, positive log bounds), then the
  whole file against W&B's sweep schema where `sweeps` is installed, so a bad one is a line naming
  it rather than a failed draw.
- `project`: the W&B project of the sweep and its runs. A W&B sweep puts its runs there whatever
  their own `wandb.project` says; the local runner passes it on as `--wandb.project` to match.
- `command`: `${env}`, `${interpreter}`, `${program}`, `${args}`, `${args_no_hyphens}`,
  `${args_no_boolean_flags}`, `${args_json}` are replaced as the W&B agent does (`--key=value`).
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lp_prune.config.hub import resolve
from lp_prune.errors import ConfigError
from lp_prune.safe_yaml import load_yaml_file
from lp_prune.sweeps import wandb_search
from lp_prune.sweeps.parameters import check_parameter, is_number, is_scalar, is_whole, sample

log = logging.getLogger(__name__)

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")  # a folder name that cannot climb out of the root
METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")


@dataclass
class Sweep:
    name: str
    method: str
    parameters: dict[str, dict[str, Any]]
    command: list[str]
    program: str | None
    run_cap: int | None
    raw: dict[str, Any]
    project: str | None = None  # the W&B project of the sweep's runs (`wandb sweep` reads the same key)
    path: Path = Path()  # the file read (a packaged one for a sweeps/ path not found here)
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)  # dotted key -> its keys in the file
    # Options that run code, as `lp-prune sweep`'s own command line asks (never the file's: config.code_options)
    code_flags: tuple[str, ...] = ()

    def path_of(self, key: str) -> tuple[str, ...]:
        return self.paths.get(key, (key,))

    @property
    def metric(self) -> str | None:
        """The name of the metric a bayes sweep optimises (and W&B charts), e.g. ppl/pruned/sw."""
        metric = self.raw.get("metric")
        return metric.get("name") if isinstance(metric, dict) else None


def load_sweep(path: str | Path) -> Sweep:
    """A sweep file, checked; a `sweeps/...` path not found here is the packaged file (config.hub)."""
    path = Path(resolve(str(path)))
    raw = _read_sweep_file(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("parameters"), dict):
        raise ConfigError(f"sweep file {path} needs a 'parameters' mapping")
    method = raw.get("method", "grid")
    if method not in METHODS:
        raise ConfigError(f"sweep method '{method}' is not one of: {', '.join(METHODS)}")
    name = str(raw.get("name") or path.stem)
    if not SAFE_NAME.match(name):
        raise ConfigError(f"sweep name '{name}' may hold only letters, digits, '.', '_' and '-' (it names a folder)")
    paths = _flatten(raw["parameters"])
    parameters = {key: _spec(raw["parameters"], path) for key, path in paths.items()}
    for key, spec in parameters.items():
        check_parameter(key, spec, method)
    if method == "bayes":
        _check_metric(raw.get("metric"), path)
    sweep = Sweep(
        name=name,
        method=method,
        parameters=parameters,
        command=_command(raw.get("command"), path),
        program=_program(raw.get("program"), path),
        run_cap=_run_cap(raw.get("run_cap"), path),
        raw=raw,
        project=_project(raw.get("project"), path),
        path=path,
        paths=paths,
    )
    problems = wandb_search.schema_problems({**raw, "method": method})  # after lp_prune's own, more precise checks
    if problems:
        raise ConfigError(f"sweep file {path} does not follow W&B's sweep schema: {'; '.join(problems)}")
    _warn_code_options(sweep)
    return sweep


def _warn_code_options(sweep: Sweep) -> None:
    """One warning line for each option that runs code which the file sets (a parameter or a word of its
    command): its runs go without it (sweeps.runner.plan drops it); lp-prune sweep's own flags allow it."""
    from lp_prune.config.code_options import CODE_OPTIONS, NOT_HONOURED, without_code_words

    dropped = without_code_words([str(part) for part in sweep.command])[1]
    named = [key for key in CODE_OPTIONS if key in sweep.parameters or any(key in word for word in dropped)]
    flags = {"model.trust_remote_code": "--trust_remote_code true", "eval.include_path": "--include_path DIR"}
    for key in named:
        log.warning(
            "sweep file %s sets %s, which %s; %s, so its runs go without it (pass %s to lp-prune sweep to allow it)",
            sweep.path,
            key,
            CODE_OPTIONS[key],
            NOT_HONOURED,
            flags[key],
        )


def _read_sweep_file(path: Path) -> Any:
    # A missing or unreadable file is named as a sweep file; load_yaml_file says what else is wrong.
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise ConfigError(f"cannot read sweep file {path}: {err.strerror or err}") from None
    return load_yaml_file(path)


def _command(value: Any, path: Path) -> list[str]:
    if value is None:
        return list(DEFAULT_COMMAND)
    if not isinstance(value, list) or not value or not all(is_scalar(part) for part in value):
        raise ConfigError(f"sweep file {path}: 'command' must be a list such as [${{env}}, lp-prune, run, ${{args}}]")
    return [str(part) for part in value]


def _program(value: Any, path: Path) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"sweep file {path}: 'program' must be a file name, got {value!r}")
    return value


def _run_cap(value: Any, path: Path) -> int | None:
    if value is not None and not (is_whole(value) and value >= 1):
        raise ConfigError(f"sweep file {path}: 'run_cap' must be a positive whole number of runs, got {value!r}")
    return value


def _project(value: Any, path: Path) -> str | None:
    if value is not None and not (isinstance(value, str) and value.strip()):
        raise ConfigError(f"sweep file {path}: 'project' must be a W&B project name, got {value!r}")
    return value


def _flatten(parameters: dict[str, Any], within: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Nested W&B parameters ({data: {parameters: {nsamples: ...}}}) -> dotted keys, each with its
    keys in the file (('data', 'nsamples')), in the file's order."""
    flat: dict[str, tuple[str, ...]] = {}
    for key, spec in parameters.items():
        path = (*within, str(key))
        dotted = ".".join(path)
        if not isinstance(spec, dict):
            raise ConfigError(f"sweep parameter '{dotted}' must be a mapping such as {{values: [...]}}")
        if "parameters" in spec:
            if not isinstance(spec["parameters"], dict):
                raise ConfigError(f"sweep parameter '{dotted}': 'parameters' must be a mapping of parameters")
            flat.update(_flatten(spec["parameters"], path))
        else:
            flat[dotted] = path
    return flat


def _spec(parameters: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    spec = parameters[path[0]]
    for key in path[1:]:
        spec = spec["parameters"][key]
    return spec


def _check_metric(metric: Any, path: Path) -> None:
    """A bayes sweep optimises `metric`: a name and a goal."""
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or not metric["name"]:
        example = "{name: ppl/pruned/sw, goal: minimize}"
        raise ConfigError(f"sweep file {path}: a bayes sweep needs 'metric' with a name, e.g. {example}")
    if metric.get("goal", "minimize") not in GOALS:
        raise ConfigError(f"sweep file {path}: metric goal '{metric['goal']}' is not one of: {', '.join(GOALS)}")


def expand(sweep: Sweep, count: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """All parameter combinations (grid) or `count` seeded draws (random), from W&B's search library
    where it is installed; each a dict of dotted keys in the file's order."""
    if count is not None and count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    if sweep.method == "bayes":
        raise ConfigError("a bayes sweep chooses each run from the finished ones: it cannot be listed in advance")
    if sweep.method == "grid":
        axes = grid_axes(sweep)
        return wandb_search.grid(sweep) if wandb_search.available() else _grid(sweep, axes)
    draws = number_of_runs(sweep, count)
    if wandb_search.available():
        return wandb_search.random_draws(sweep, draws, seed)
    rng = random.Random(seed)
    return [{key: sample(spec, rng, key) for key, spec in sweep.parameters.items()} for _ in range(draws)]


def number_of_runs(sweep: Sweep, count: int | None) -> int:
    """How many runs a random or bayes sweep makes: --count, else the file's run_cap."""
    if count is not None and count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    draws = count or sweep.run_cap
    if not draws:
        raise ConfigError(f"a {sweep.method} sweep needs a number of runs: --count N (or run_cap in the file)")
    return draws


def grid_axes(sweep: Sweep) -> dict[str, list[Any]]:
    """Each parameter's grid values, in the file's order (W&B's grid: values, value, int_uniform and
    q_uniform ranges, q_uniform's max itself left out as numpy.arange leaves it)."""
    axes: dict[str, list[Any]] = {}
    for key, spec in sweep.parameters.items():
        kind = spec.get("distribution")
        if "values" in spec:
            axes[key] = list(spec["values"])
        elif "value" in spec:
            axes[key] = [spec["value"]]
        elif kind == "int_uniform" and is_whole(spec.get("min")) and is_whole(spec.get("max")):
            axes[key] = list(range(spec["min"], spec["max"] + 1))
        elif kind == "q_uniform" and all(is_number(spec.get(name)) for name in ("min", "max", "q")) and spec["q"] > 0:
            axes[key] = _arange(spec["min"], spec["max"], spec["q"])
        else:
            raise ConfigError(
                f"grid sweeps need 'values' or 'value' (or an int_uniform / q_uniform range) for every parameter; "
                f"'{key}' has none"
            )
    return axes


def _grid(sweep: Sweep, axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """W&B's grid without the library: the product over the parameters sorted by their keys in the
    file (the last varying fastest), a combination met twice (1 and 1.0) given once."""
    ordered = sorted(axes, key=sweep.path_of)
    combinations, seen = [], set()
    for combo in itertools.product(*(axes[key] for key in ordered)):
        params = dict(zip(ordered, combo, strict=True))
        identity = json.dumps([_grid_identity(value) for value in combo], sort_keys=True, default=str)
        if identity not in seen:
            seen.add(identity)
            combinations.append({key: params[key] for key in axes})
    return combinations


def _grid_identity(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _arange(low: float, high: float, step: float) -> list[float]:
    import numpy as np

    return np.arange(low, high, step).tolist()


def agent_args(params: dict[str, Any]) -> dict[str, list[str]]:
    """The argument lists a W&B agent substitutes into the sweep command."""
    flags = [f"--{key}={value}" for key, value in params.items()]
    return {
        "args": flags,
        "args_no_hyphens": [flag[2:] for flag in flags],
        "args_no_boolean_flags": [
            f"--{key}" if value is True else f"--{key}={value}" for key, value in params.items() if value is not False
        ],
        "args_json": [json.dumps(params)],
    }


def agent_command(sweep: Sweep, params: dict[str, Any], interpreter: str = "python") -> list[str]:
    """The argv a W&B agent would run for `params` (macros replaced, no shell involved)."""
    macros = {**agent_args(params), "env": ["/usr/bin/env"], "interpreter": [interpreter]}
    if sweep.program:
        macros["program"] = [sweep.program]
    argv: list[str] = []
    for part in sweep.command:
        part = str(part)
        if part.startswith("${") and part.endswith("}"):
            argv += macros.get(part[2:-1], [])
        else:
            argv.append(part)
    return argv
