"""Checks and parsers of single config values: seeds, N:M patterns, sizes in bytes, finite numbers."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from lp_prune.errors import ConfigError

MAX_FILE_SIZE = 2**63 - 1  # a file offset is a signed 64-bit integer
SEED_LIMIT = 2**32  # numpy's seeds, and so L.seed_everything's, lie in [0, 2**32)


def check_seed(seed: Any, key: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{key} must be a non-negative integer below 2**32 (numpy's limit), got {seed!r}")


_PATTERN = re.compile(r"^(\d+):(\d+)$")


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """'unstructured' -> None; 'N:M' -> (N, M) with 0 < N < M (N of every M consecutive weights pruned)."""
    if pattern == "unstructured":
        return None
    match = _PATTERN.match(pattern.strip())
    if not match:
        raise ConfigError(f"prune.pattern '{pattern}' is neither 'unstructured' nor N:M such as '2:4'")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise ConfigError(f"prune.pattern '{pattern}': N:M needs 0 < N < M (N pruned of every M weights)")
    return n, m


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]I?B)?", re.IGNORECASE)
_SIZE_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}  # decimal, as transformers / the Hub
_SIZE_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def size_in_bytes(size: int | str, key: str = "size") -> int:
    """A positive size: an int of bytes, or a string such as "5GB" (10^9), "500MB", "2GiB" (2^30), "1000"."""
    if isinstance(size, bool) or not isinstance(size, int | str):
        raise ConfigError(f"{key} must be a number of bytes or a size such as '5GB', got {size!r}")
    if isinstance(size, str):
        match = _SIZE.fullmatch(size.strip())
        if match is None:
            raise ConfigError(f"{key} '{size}' is not a size such as '5GB', '500MB', '2GiB' or a number of bytes")
        number, unit = match.groups()
        size = int(Fraction(number) * (_SIZE_UNITS[unit.upper()] if unit else 1))  # exact, however many digits
    if size < 1:
        raise ConfigError(f"{key} must be at least 1 byte, got {size}")
    if size > MAX_FILE_SIZE:
        shown = str(size) if size < 10**30 else f"(a {len(str(size))}-digit number)"
        raise ConfigError(f"{key} {shown} exceeds the largest file size, 2**63 - 1 bytes")
    return size


def check_finite(options: Any, prefix: str = "") -> None:
    """Every float in a dataclass of settings (in its nested dataclasses, lists and dicts too) is a
    finite number: NaN passes every `x < bound` check unseen, and infinity breaks arithmetic. A dataclass
    with a `to_dict` is checked as that spells it (PruneConfig: the method's settings as prune's keys)."""
    if isinstance(options, Mapping):
        values = dict(options)
    elif hasattr(options, "to_dict"):
        values = options.to_dict()
    else:
        values = {item.name: getattr(options, item.name) for item in dataclasses.fields(options)}
    for name, value in values.items():
        _check_finite_value(value, f"{prefix}{name}")


def _check_finite_value(value: Any, key: str) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        check_finite(value, f"{key}.")
    elif isinstance(value, dict):
        for name, inner in value.items():
            _check_finite_value(inner, f"{key}.{name}")
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            _check_finite_value(inner, f"{key}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value}")


Devices = int | list[int] | str  # a count, device ids, or "auto": Lightning's Trainer(devices=...)
_DEVICE_SPELLINGS = "auto, a number of devices (2), or device ids ([0,1] or 0,1)"


def parse_devices(value: Any, key: str = "devices") -> Devices:
    """Lightning's spellings of devices in one form: "auto"; a count (2, "2") as an int >= 1; device ids
    ([0, 1], "[0,1]", "0,1", "1,") as a list of distinct ints >= 0."""
    if isinstance(value, str):
        text = value.strip()
        if text == "auto":
            return "auto"
        if text.isdigit():
            value = int(text)
        else:
            parts = [part.strip() for part in text.strip("[]").split(",")]
            if text.startswith("[") != text.endswith("]") or not all(part.isdigit() for part in parts if part):
                raise ConfigError(f"{key} '{value}' is not one of: {_DEVICE_SPELLINGS}")
            value = [int(part) for part in parts if part]
    if isinstance(value, bool):
        raise ConfigError(f"{key} {value!r} is not one of: {_DEVICE_SPELLINGS}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value} ({_DEVICE_SPELLINGS})")
        return value
    if isinstance(value, list | tuple):
        ids = list(value)
        if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ConfigError(f"{key} {value!r} is not one of: {_DEVICE_SPELLINGS}")
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{key} {value!r} names a device twice")
        return ids
    raise ConfigError(f"{key} {value!r} is not one of: {_DEVICE_SPELLINGS}")
