"""W&B sweep files, expanded without a W&B server.

The same YAML runs two ways: `wandb sweep FILE` + `wandb agent` (the server picks parameters), or
`lp-prune sweep FILE`, which expands the parameters here with W&B's semantics and builds for each
combination the command line a W&B agent would run:

- `method: grid`: the cartesian product of every parameter's `values` (or its single `value`), in
  the order the parameters appear; continuous distributions are not allowed in a grid (as in W&B).
- `method: random`: `count` (or the file's `run_cap`) independent draws, seeded: `values` uniformly
  or with `probabilities`; distributions `uniform`, `int_uniform`, `q_uniform`, `log_uniform_values`,
  `q_log_uniform_values`, `normal`, `q_normal`, `log_normal`, `categorical`, `constant`.
- Parameters are config keys in dotted form (`data.calibration_language`, `prune.method`). Each spec
  is checked when the file loads (`values` a list, `probabilities` matching it, numeric bounds with
  min <= max, positive log bounds), so a bad one is a line naming it rather than a failed draw.
- `project`: the W&B project of the sweep and its runs. A W&B sweep puts its runs there whatever
  their own `wandb.project` says; the local runner passes it on as `--wandb.project` to match.
- `command`: `${env}`, `${interpreter}`, `${program}`, `${args}`, `${args_no_hyphens}`,
  `${args_no_boolean_flags}`, `${args_json}` are replaced as the W&B agent does (`--key=value`).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lp_prune.config.hub import resolve
from lp_prune.errors import ConfigError
from lp_prune.safe_yaml import load_yaml_file

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")  # a folder name that cannot climb out of the root
BOUNDED = ("uniform", "int_uniform", "q_uniform", "log_uniform_values", "q_log_uniform_values")
GAUSSIAN = ("normal", "q_normal", "log_normal")
DISTRIBUTIONS = ("constant", "categorical", *BOUNDED, *GAUSSIAN)


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


def load_sweep(path: str | Path) -> Sweep:
    """A sweep file, checked; a `sweeps/...` path not found here is the packaged file (config.hub)."""
    path = Path(resolve(str(path)))
    raw = _read_sweep_file(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("parameters"), dict):
        raise ConfigError(f"sweep file {path} needs a 'parameters' mapping")
    method = raw.get("method", "grid")
    if method not in ("grid", "random"):
        raise ConfigError(f"sweep method '{method}' runs only on a W&B server; lp-prune sweep runs grid and random")
    name = str(raw.get("name") or path.stem)
    if not SAFE_NAME.match(name):
        raise ConfigError(f"sweep name '{name}' may hold only letters, digits, '.', '_' and '-' (it names a folder)")
    parameters = _flatten(raw["parameters"])
    for key, spec in parameters.items():
        check_parameter(key, spec, method)
    return Sweep(
        name=name,
        method=method,
        parameters=parameters,
        command=_command(raw.get("command"), path),
        program=_program(raw.get("program"), path),
        run_cap=_run_cap(raw.get("run_cap"), path),
        raw=raw,
        project=_project(raw.get("project"), path),
        path=path,
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
    if not isinstance(value, list) or not value or not all(_is_scalar(part) for part in value):
        raise ConfigError(f"sweep file {path}: 'command' must be a list such as [${{env}}, lp-prune, run, ${{args}}]")
    return [str(part) for part in value]


def _program(value: Any, path: Path) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"sweep file {path}: 'program' must be a file name, got {value!r}")
    return value


def _run_cap(value: Any, path: Path) -> int | None:
    if value is not None and not (_is_whole(value) and value >= 1):
        raise ConfigError(f"sweep file {path}: 'run_cap' must be a positive whole number of runs, got {value!r}")
    return value


def _project(value: Any, path: Path) -> str | None:
    if value is not None and not (isinstance(value, str) and value.strip()):
        raise ConfigError(f"sweep file {path}: 'project' must be a W&B project name, got {value!r}")
    return value


def _flatten(parameters: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Nested W&B parameters ({data: {parameters: {nsamples: ...}}}) -> dotted keys."""
    flat: dict[str, dict[str, Any]] = {}
    for key, spec in parameters.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"sweep parameter '{prefix}{key}' must be a mapping such as {{values: [...]}}")
        if "parameters" in spec:
            if not isinstance(spec["parameters"], dict):
                raise ConfigError(f"sweep parameter '{prefix}{key}': 'parameters' must be a mapping of parameters")
            flat.update(_flatten(spec["parameters"], f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = spec
    return flat


def expand(sweep: Sweep, count: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """All parameter combinations (grid) or `count` seeded draws (random)."""
    if count is not None and count < 1:
        raise ConfigError(f"--count must be at least 1, got {count}")
    if sweep.method == "grid":
        return _grid(sweep.parameters)
    draws = count or sweep.run_cap
    if not draws:
        raise ConfigError("a random sweep needs a number of runs: --count N (or run_cap in the file)")
    rng = random.Random(seed)
    return [{key: sample(spec, rng, key) for key, spec in sweep.parameters.items()} for _ in range(draws)]


def _grid(parameters: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    axes = []
    for key, spec in parameters.items():
        if "values" in spec:
            axes.append(list(spec["values"]))
        elif "value" in spec:
            axes.append([spec["value"]])
        else:
            raise ConfigError(f"grid sweeps need 'values' or 'value' for every parameter; '{key}' has neither")
    return [dict(zip(parameters, combo, strict=True)) for combo in itertools.product(*axes)]


def sample(spec: dict[str, Any], rng: random.Random, key: str = "") -> Any:
    """One draw of a W&B parameter spec."""
    kind = spec_kind(spec)
    if kind == "value":
        return spec["value"]
    if kind == "values":
        values = list(spec["values"])
        weights = spec.get("probabilities")
        return rng.choices(values, weights=weights)[0] if weights else rng.choice(values)
    try:
        return _continuous(kind, spec, rng)
    except KeyError as err:
        raise ConfigError(f"sweep parameter '{key}': distribution {kind} needs {err}") from None


def spec_kind(spec: dict[str, Any]) -> str:
    """How a random sweep draws `spec`: 'value', 'values', or the name of its continuous distribution."""
    distribution = spec.get("distribution")
    if "value" in spec or distribution == "constant":
        return "value"
    if "values" in spec and distribution in (None, "categorical"):
        return "values"
    return distribution or "uniform"


def check_parameter(key: str, spec: dict[str, Any], method: str) -> None:
    """Refuse a spec the sweep could not draw from, with a line naming the parameter.

    A grid reads only `values` / `value` (a missing one is reported by expand); a random sweep draws
    from the distribution, so its bounds are checked here rather than failing mid-draw.
    """
    if "values" in spec:
        _check_values(key, spec)
    if method != "random":
        return
    distribution = spec.get("distribution")
    if distribution is not None and distribution not in DISTRIBUTIONS:
        supported = ", ".join(DISTRIBUTIONS)
        raise ConfigError(f"sweep parameter '{key}': distribution '{distribution}' is not one of: {supported}")
    kind = spec_kind(spec)
    if kind == "value" and "value" not in spec:
        raise ConfigError(f"sweep parameter '{key}': distribution constant needs 'value'")
    if kind == "categorical":
        raise ConfigError(f"sweep parameter '{key}': distribution categorical needs 'values'")
    if kind in BOUNDED:
        _check_bounds(key, spec, kind)
    if kind in GAUSSIAN:
        _check_gaussian(key, spec)
    if kind.startswith("q_"):
        _check_number(key, spec, "q", default=1, positive=True)


def _check_values(key: str, spec: dict[str, Any]) -> None:
    values = spec["values"]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"sweep parameter '{key}': 'values' must be a non-empty list such as [a, b], got {values!r}")
    weights = spec.get("probabilities")
    if weights is None:
        return
    if not isinstance(weights, list) or not all(_is_number(weight) for weight in weights):
        raise ConfigError(f"sweep parameter '{key}': 'probabilities' must be a list of numbers, got {weights!r}")
    if len(weights) != len(values):
        raise ConfigError(f"sweep parameter '{key}': {len(weights)} probabilities for {len(values)} values")
    if any(weight < 0 for weight in weights):
        raise ConfigError(f"sweep parameter '{key}': probabilities cannot be negative, got {weights}")
    if not math.isclose(sum(weights), 1.0, abs_tol=1e-6):
        raise ConfigError(f"sweep parameter '{key}': probabilities sum to {sum(weights):g}, not 1")


def _check_bounds(key: str, spec: dict[str, Any], kind: str) -> None:
    if "min" not in spec or "max" not in spec:
        raise ConfigError(f"sweep parameter '{key}': distribution {kind} needs 'min' and 'max'")
    low = _check_number(key, spec, "min")
    high = _check_number(key, spec, "max")
    if low > high:
        raise ConfigError(f"sweep parameter '{key}': min {low} is greater than max {high}")
    if kind == "int_uniform" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"sweep parameter '{key}': int_uniform needs whole-number min and max, got {low} and {high}")
    if kind.endswith("log_uniform_values") and low <= 0:
        # These draw uniformly in log(value): a bound at or below zero has no logarithm.
        raise ConfigError(f"sweep parameter '{key}': {kind} needs min > 0, got {low}")


def _check_gaussian(key: str, spec: dict[str, Any]) -> None:
    _check_number(key, spec, "mu", default=0.0)
    if _check_number(key, spec, "sigma", default=1.0) < 0:
        raise ConfigError(f"sweep parameter '{key}': sigma cannot be negative, got {spec['sigma']}")


def _check_number(key: str, spec: dict[str, Any], name: str, default: float = 0.0, positive: bool = False) -> float:
    value = spec.get(name, default)
    if not _is_number(value) or (positive and value <= 0):
        wanted = "a positive number" if positive else "a number"
        raise ConfigError(f"sweep parameter '{key}': {name} must be {wanted}, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    # YAML reads `true` as a bool, which Python counts as an int: not a bound anyone means.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str) or _is_number(value)


def _continuous(distribution: str, spec: dict[str, Any], rng: random.Random) -> float | int:
    q = spec.get("q", 1)
    if distribution == "uniform":
        return rng.uniform(spec["min"], spec["max"])
    if distribution == "int_uniform":
        return rng.randint(int(spec["min"]), int(spec["max"]))
    if distribution == "q_uniform":
        return _quantise(rng.uniform(spec["min"], spec["max"]), q)
    if distribution in ("log_uniform_values", "q_log_uniform_values"):
        value = math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"])))
        return _quantise(value, q) if distribution.startswith("q_") else value
    if distribution in ("normal", "q_normal"):
        value = rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0))
        return _quantise(value, q) if distribution.startswith("q_") else value
    if distribution == "log_normal":
        return math.exp(rng.gauss(spec.get("mu", 0.0), spec.get("sigma", 1.0)))
    raise ConfigError(f"sweep distribution '{distribution}' is not supported by lp-prune sweep")


def _quantise(value: float, q: float) -> float | int:
    rounded = round(value / q) * q
    return int(rounded) if float(q).is_integer() else rounded


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
