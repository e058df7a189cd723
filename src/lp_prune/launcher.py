"""Lightning's launcher: `fabric run` exports its choices as LT_* variables to the script it starts.

    fabric run --accelerator=cpu --devices=2 src/lp_prune/__main__.py run --config ... --out RUN_DIR

`fabric run` starts the processes itself (through torchrun) and exports LT_ACCELERATOR, LT_DEVICES,
LT_STRATEGY, LT_NUM_NODES and LT_PRECISION. A run honours each of them where its config is at the
default; a key the config sets wins. LT_PRECISION maps onto model.dtype (the weights' dtype: mixed
precision has no separate meaning in a forward-only pruning run).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

from lp_prune.config import ModelConfig, RunConfig
from lp_prune.errors import ConfigError

PRECISION_DTYPES = {
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
        changes["devices"] = _count("LT_DEVICES", environ["LT_DEVICES"])
    if "LT_NUM_NODES" in environ and config.num_nodes == defaults.num_nodes:
        changes["num_nodes"] = _count("LT_NUM_NODES", environ["LT_NUM_NODES"])
    if "LT_PRECISION" in environ and config.model.dtype == ModelConfig().dtype:
        precision = environ["LT_PRECISION"]
        if precision not in PRECISION_DTYPES:
            raise ConfigError(
                f"fabric run --precision {precision} has no model.dtype; use one of: {', '.join(PRECISION_DTYPES)}"
            )
        changes["model"] = replace(config.model, dtype=PRECISION_DTYPES[precision])
    if "devices" in changes and changes["devices"] > 1 and "strategy" not in changes and config.strategy == "auto":
        changes["strategy"] = "ddp"  # several processes from fabric run: data parallel
    return replace(config, **changes)


def _count(name: str, value: str) -> int:
    """A number of devices or nodes; lists of device ids count their entries ('0,1' -> 2)."""
    value = value.strip()
    if value.isdigit():
        return int(value)
    ids = [part for part in value.strip("[]").split(",") if part.strip()]
    if ids and all(part.strip().isdigit() for part in ids):
        return len(ids)
    raise ConfigError(f"{name}={value!r}: lp_prune needs a number of devices (or a list of device ids)")
