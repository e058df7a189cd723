"""W&B sweep files, expanded without a W&B server.

The same YAML runs two ways: `wandb sweep FILE` + `wandb agent` (the server picks parameters), or
`lp-prune sweep FILE`, which expands the parameters here with W&B's semantics and builds for each
combination the command line a W&B agent would run:

- `method: grid`: the cartesian product of every parameter's `values` (or its single `value`), in
  the order the parameters appear; continuous distributions are not allowed in a grid (as in W&B).
- `method: random`: `count` (or the file's `run_cap`) independent draws, seeded: `values` uniformly
  or with `probabilities`; distributions `uniform`, `int_uniform`, `q_uniform`, `log_uniform_values`,
  `q_log_uniform_values`, `normal`, `q_normal`, `log_normal`, `categorical`, `constant`.
- Parameters are config keys in dotted form (`data.calibration_language`, `prune.method`).
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

import yaml

from lp_prune.errors import ConfigError

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")  # a folder name that cannot climb out of the root


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


def load_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read sweep file {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("parameters"), dict):
        raise ConfigError(f"sweep file {path} needs a 'parameters' mapping")
    method = raw.get("method", "grid")
    if method not in ("grid", "random"):
        raise ConfigError(f"sweep method '{method}' runs only on a W&B server; lp-prune sweep runs grid and random")
    name = str(raw.get("name") or path.stem)
    if not SAFE_NAME.match(name):
        raise ConfigError(f"sweep name '{name}' may hold only letters, digits, '.', '_' and '-' (it names a folder)")
    return Sweep(
        name=name,
        method=method,
        parameters=_flatten(raw["parameters"]),
        command=list(raw.get("command") or DEFAULT_COMMAND),
        program=raw.get("program"),
        run_cap=raw.get("run_cap"),
        raw=raw,
        project=_project(raw.get("project"), path),
    )


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
            flat.update(_flatten(spec["parameters"], f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = spec
    return flat


def expand(sweep: Sweep, count: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """All parameter combinations (grid) or `count` seeded draws (random)."""
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
    distribution = spec.get("distribution")
    if "value" in spec or distribution == "constant":
        return spec["value"]
    if "values" in spec and distribution in (None, "categorical"):
        values = list(spec["values"])
        weights = spec.get("probabilities")
        return rng.choices(values, weights=weights)[0] if weights else rng.choice(values)
    try:
        return _continuous(distribution or "uniform", spec, rng)
    except KeyError as err:
        raise ConfigError(f"sweep parameter '{key}': distribution {distribution} needs {err}") from None


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
