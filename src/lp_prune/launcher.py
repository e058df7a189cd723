"""Lightning's launcher: `fabric run` exports its choices as LT_* variables to the script it starts.

    fabric run --accelerator=cpu --devices=2 "$LP_PRUNE_MAIN" run --config ... --out RUN_DIR   # lp_prune/__main__.py

`fabric run` starts the processes itself (through torchrun) and exports LT_ACCELERATOR, LT_DEVICES,
LT_STRATEGY, LT_NUM_NODES and LT_PRECISION. A run honours each of them where its config is at the
default; a key the config sets wins. A precision in Lightning's spelling (LT_PRECISION, and
`lp-prune run --precision`) maps onto model.dtype (the weights' dtype: mixed precision has no separate
meaning in a forward-only pruning run).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

from lp_prune.config import ModelConfig, RunConfig
from lp_prune.config.values import parse_devices
from lp_prune.errors import ConfigError

PRECISION_DTYPES = {
    "64": "float64",
    "64-true": "float64",
    "32": "float32",
    "32-true": "float32",
    "bf16": "bfloat16",
    "bf16-true": "bfloat16",
    "bf16-mixed": "bfloat16",
    "16": "float16",
    "16-true": "float16",
    "16-mixed": "float16",
}


def apply_launcher_environment(config: RunConfig, environ: Mapping[str, str] = os.environ) -> RunConfig:
    """`config` with the LT_* choices of `fabric run` filled in where the config keeps its defaults."""
    defaults = RunConfig()
    changes: dict[str, object] = {}
    if "LT_ACCELERATOR" in environ and config.accelerator == defaults.accelerator:
        changes["accelerator"] = environ["LT_ACCELERATOR"]
    if "LT_STRATEGY" in environ and config.strategy == defaults.strategy:
        changes["strategy"] = environ["LT_STRATEGY"]
    if "LT_DEVICES" in environ and config.devices == defaults.devices:
        changes["devices"] = parse_devices(environ["LT_DEVICES"], "fabric run --devices")
    if "LT_NUM_NODES" in environ and config.num_nodes == defaults.num_nodes:
        nodes = environ["LT_NUM_NODES"].strip()
        if not nodes.isdigit() or int(nodes) < 1:
            raise ConfigError(f"fabric run --num_nodes {nodes!r}: lp_prune needs a number of machines")
        changes["num_nodes"] = int(nodes)
    if "LT_PRECISION" in environ and config.model.dtype == ModelConfig().dtype:
        changes["model"] = replace(
            config.model, dtype=precision_dtype(environ["LT_PRECISION"], "fabric run --precision")
        )
    started = replace(config, **changes)
    several = "devices" in changes and started.processes_per_machine > 1
    if several and "strategy" not in changes and config.strategy == "auto":
        started.strategy = "ddp"  # several processes from fabric run: data parallel
    return started


def precision_dtype(precision: str, flag: str = "--precision") -> str:
    """The model.dtype of a precision in Lightning's spelling (32-true, bf16-mixed, ...)."""
    if precision not in PRECISION_DTYPES:
        raise ConfigError(f"{flag} '{precision}' is not one of: {', '.join(PRECISION_DTYPES)}")
    return PRECISION_DTYPES[precision]


def with_precision(config: RunConfig, precision: str | None) -> RunConfig:
    """`config` with model.dtype set by `--precision` (None: as it is); a model.dtype set otherwise that
    contradicts it is refused."""
    if precision is None:
        return config
    dtype = precision_dtype(precision)
    if config.model.dtype not in (ModelConfig().dtype, dtype):
        raise ConfigError(
            f"--precision {precision} means model.dtype {dtype}, but model.dtype is {config.model.dtype}; give one"
        )
    return replace(config, model=replace(config.model, dtype=dtype))
