"""lp_prune: language-targeted pruning of multilingual LLMs, measured.

Public entry points: `lp_prune.prune(model, tokenizer, calibration=...)` (an in-memory model, pruned in
place), `lp_prune.run(RunConfig(...))` (the whole job of `lp-prune run`), `lp_prune.load_config(path)`
(the RunConfig of `lp-prune run --config path`), `lp_prune.load_masks(run_dir)` and the `lp-prune`
command line.

The entry points load on first use, so that `lp-prune --help` and `--version` start without torch.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from lp_prune.lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports("lp_prune", globals(), _PUBLIC)
