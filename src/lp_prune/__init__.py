"""lp_prune: language-targeted pruning of multilingual LLMs, measured.

Public entry points: `lp_prune.prune(model, tokenizer_or_ids, ...)` (an in-memory model, pruned in
place), `lp_prune.run(RunConfig(...))` (the whole job of `lp-prune run`), `lp_prune.load_masks(run_dir)`
and the `lp-prune` command line.
"""

from importlib.metadata import PackageNotFoundError, version

from lp_prune.api import PruneResult, prune, run
from lp_prune.config import RunConfig
from lp_prune.tracking.saved_masks import load_masks

__all__ = ["PruneResult", "RunConfig", "load_masks", "prune", "run"]

try:
    __version__ = version("lp-prune")  # the installed distribution's version (pyproject.toml)
except PackageNotFoundError:  # the source tree on sys.path without an install
    __version__ = "0+unknown"
