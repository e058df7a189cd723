"""How many runs a sweep makes, counted from its parameters before any run is listed: a grid of 10^12
combinations or 10^9 random draws is refused in one line instead of filling memory."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from lp_prune.errors import ConfigError
from lp_prune.sweeps.expand import Sweep, grid_axes, number_of_runs

DEFAULT_MAX_RUNS = 10_000


def sweep_size(sweep: Sweep, count: int | None) -> int:
    """Runs of the sweep: the product of its grid axes' lengths, or the number of draws (--count, run_cap)."""
    if sweep.method != "grid":
        return number_of_runs(sweep, count)
    return math.prod(_axis_length(sweep, key, spec) for key, spec in sweep.parameters.items())


def _axis_length(sweep: Sweep, key: str, spec: dict[str, Any]) -> int:
    kind, low, high = spec.get("distribution"), spec.get("min"), spec.get("max")
    numbers = all(isinstance(value, int | float) and not isinstance(value, bool) for value in (low, high))
    if "values" not in spec and "value" not in spec and numbers:
        if kind == "int_uniform" and isinstance(low, int) and isinstance(high, int):
            return max(0, high - low + 1)
        step = spec.get("q")
        if kind == "q_uniform" and isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
            span = (high - low) / step
            return max(0, math.ceil(span)) if math.isfinite(span) else 0
    # values / value lists, or a parameter grid_axes refuses (it says why)
    return len(grid_axes(replace(sweep, parameters={key: spec}))[key])


def check_sweep_size(sweep: Sweep, count: int | None, max_runs: int) -> int:
    if max_runs < 1:
        raise ConfigError(f"--max_runs must be at least 1, got {max_runs}")
    runs = sweep_size(sweep, count)
    if runs > max_runs:
        raise ConfigError(
            f"sweep {sweep.name} makes {runs:,} runs, more than --max_runs {max_runs:,}; "
            "narrow its parameters or --count, or raise --max_runs"
        )
    return runs
