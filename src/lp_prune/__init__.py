"""lp_prune: language-targeted pruning of multilingual LLMs, measured.

Public entry points: `lp_prune.prune(model, tokenizer, calibration=...)` (an in-memory model, pruned in
place), `lp_prune.run(RunConfig(...))` (the whole job of `lp-prune run`), `lp_prune.load_config(path)`
(the RunConfig of `lp-prune run --config path`), `lp_prune.load_masks(run_dir)` and the `lp-prune`
command line.

The entry points load on first use, so that `lp-prune --help` and `--version` start without torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lp_prune.api import PruneResult, load_config, prune, run
    from lp_prune.config import RunConfig
    from lp_prune.tracking.saved_masks import load_masks

_PUBLIC = {
    "PruneResult": "lp_prune.api",
    "RunConfig": "lp_prune.config",
    "load_config": "lp_prune.api",
    "load_masks": "lp_prune.tracking.saved_masks",
    "prune": "lp_prune.api",
    "run": "lp_prune.api",
}
__all__ = ["PruneResult", "RunConfig", "load_config", "load_masks", "prune", "run"]

try:
    __version__ = version("lp-prune")  # the installed distribution's version (pyproject.toml)
except PackageNotFoundError:  # the source tree on sys.path without an install
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'lp_prune' has no attribute '{name}'")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # found once; later look-ups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
