"""One parameter of a sweep file: the distributions W&B's sweep controller knows, each spec's checks
(so a bad one is a line naming it when the file loads), and a draw from it for lp_prune's own random
search (used when W&B's `sweeps` library is not installed).
"""

from __future__ import annotations

import math
import random
from typing import Any

from lp_prune.errors import ConfigError

BOUNDED = ("uniform", "int_uniform", "q_uniform", "log_uniform_values", "q_log_uniform_values")
GAUSSIAN = ("normal", "q_normal", "log_normal")
DISTRIBUTIONS = ("constant", "categorical", *BOUNDED, *GAUSSIAN)


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
        if method == "grid" and spec.get("probabilities") is not None:
            raise ConfigError(f"sweep parameter '{key}': a grid takes no 'probabilities' (W&B refuses them)")
    if method == "grid":
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
    if not isinstance(weights, list) or not all(is_number(weight) for weight in weights):
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
    if not is_number(value) or (positive and value <= 0):
        wanted = "a positive number" if positive else "a number"
        raise ConfigError(f"sweep parameter '{key}': {name} must be {wanted}, got {value!r}")
    return value


def is_number(value: Any) -> bool:
    # YAML reads `true` as a bool, which Python counts as an int: not a bound anyone means.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_scalar(value: Any) -> bool:
    return isinstance(value, str) or is_number(value)


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
