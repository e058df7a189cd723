"""W&B's own search, run here: the `sweeps` library (PyPI `sweeps`) that the W&B server uses to pick
each next run of a grid, random or bayes sweep, and its schema of sweep files.

Installed apart from lp_prune's dependencies, because it declares numpy<2 and runs on numpy 2 all
the same: `pip install --no-deps sweeps==0.3.0 jsonref && pip install jsonschema` (its other
requirements, scikit-learn, scipy, pydantic and PyYAML, come with lp_prune's). Without it, grid and
random sweeps are expanded by lp_prune.sweeps.expand itself and bayes sweeps are refused with that line.

The library works on the file's nested `parameters` and gives each run's values as
`{key: {"value": v}}` (nested parameters as nested dicts under the first key's "value"); here they
become the dotted keys of Sweep.parameters again, in the file's order, as Python values (not numpy's).
"""

from __future__ import annotations

import contextlib
import importlib.util
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lp_prune.errors import ConfigError

# --no-deps: it declares numpy<2 but works on numpy 2; jsonschema is the one requirement lp_prune's lack
INSTALL = "pip install --no-deps sweeps==0.3.0 jsonref && pip install jsonschema"
ALL_OF_A_GRID = 10**7  # asked for at once; the library stops at the grid's end


def load() -> Any | None:
    """The `sweeps` module, or None when it is not installed (installed but broken: a ConfigError)."""
    spec = importlib.util.find_spec("sweeps")
    if spec is None or spec.origin is None:  # absent, or only a folder named sweeps/ here (a namespace package)
        return None
    with warnings.catch_warnings():  # its pydantic models use v1 names: a warning per import, nothing wrong
        warnings.simplefilter("ignore")
        try:
            import sweeps
        except ImportError as err:
            broken = f"W&B's search library `sweeps` is installed but does not import ({err}): {INSTALL}"
            raise ConfigError(broken) from None
    return sweeps


def available() -> bool:
    return load() is not None


def require(method: str) -> Any:
    library = load()
    if library is None:
        raise ConfigError(f"a {method} sweep needs W&B's search library here: {INSTALL}")
    return library


def schema_problems(raw: dict[str, Any]) -> list[str]:
    """What W&B's sweep schema says against the file (empty when it conforms or the library is absent)."""
    library = load()
    if library is None:
        return []
    try:
        problems = library.schema_violations_from_proposed_config(raw)
    except ValueError as err:
        return [str(err)]
    return list(dict.fromkeys(problems))


def search_config(sweep: Any) -> dict[str, Any]:
    """What the library reads of a Sweep: method, the file's parameters as written, the metric."""
    config = {"method": sweep.method, "parameters": sweep.raw["parameters"]}
    if "metric" in sweep.raw:
        config["metric"] = sweep.raw["metric"]
    return config


def grid(sweep: Any) -> list[dict[str, Any]]:
    """Every combination, in the order the W&B server hands them to agents."""
    library = require("grid")
    runs = _next_runs(library, sweep, [], ALL_OF_A_GRID)
    return [values(sweep, run.config) for run in runs if run is not None]


def random_draws(sweep: Any, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` draws as the W&B server makes them, from Python's `random` seeded with `seed` (its state
    is put back afterwards)."""
    library = require("random")
    with _seeded(seed):
        runs = _next_runs(library, sweep, [], count)
    return [values(sweep, run.config) for run in runs]


@dataclass
class Observed:
    """A run of a bayes sweep as the search sees it: its values, its state and its metric."""

    params: dict[str, Any]
    state: str  # "finished", "running" or "failed"
    metric: float | None = None


def bayes_next(sweep: Any, history: Sequence[Observed], seed: int) -> dict[str, Any]:
    """The next run of a bayes sweep given the runs so far (their metric: sweep.raw['metric']['name']).

    numpy's and Python's random states are seeded with (seed, number of runs so far) for the call, so
    the same history gives the same suggestion, and put back afterwards.
    """
    library = require("bayes")
    metric = sweep.raw["metric"]["name"]
    runs = [
        library.SweepRun(
            name=f"run{index}",
            state=item.state,
            config=nested(sweep, item.params),
            summary_metrics={} if item.metric is None else {metric: item.metric},
        )
        for index, item in enumerate(history)
    ]
    with _seeded(seed, len(history)):
        (suggestion,) = _next_runs(library, sweep, runs, 1)
    return values(sweep, suggestion.config)


def _next_runs(library: Any, sweep: Any, runs: list[Any], n: int) -> list[Any]:
    try:
        with warnings.catch_warnings():  # scikit-learn's notes on fitting the bayes search's Gaussian process
            warnings.filterwarnings("ignore", module="sklearn")
            return list(library.next_runs(search_config(sweep), runs, validate=False, n=n))
    except ValueError as err:  # what the library refuses (a grid over a continuous range, ...)
        raise ConfigError(f"sweep {sweep.name}: {err}") from None


@contextlib.contextmanager
def _seeded(*seed: int) -> Iterator[None]:
    python_state, numpy_state = random.getstate(), np.random.get_state()
    random.seed(seed[0] if len(seed) == 1 else "/".join(map(str, seed)))
    np.random.seed([*seed])
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def values(sweep: Any, config: dict[str, Any]) -> dict[str, Any]:
    """A run config of the library ({key: {"value": v}}, nested under the first key) as dotted keys."""
    found: dict[str, Any] = {}
    for key, path in sweep.paths.items():
        value = config[path[0]]["value"]
        for part in path[1:]:
            value = value[part]
        found[key] = native(value)
    return found


def nested(sweep: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Dotted-key values as the library's run config (the inverse of `values`)."""
    config: dict[str, Any] = {}
    for key, value in params.items():
        path = sweep.paths[key]
        if len(path) == 1:
            config[path[0]] = {"value": value}
            continue
        level = config.setdefault(path[0], {"value": {}})["value"]
        for part in path[1:-1]:
            level = level.setdefault(part, {})
        level[path[-1]] = value
    return config


def native(value: Any) -> Any:
    """numpy scalars and arrays the library returns as plain Python values (YAML and JSON take those)."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [native(item) for item in value]
    return value
