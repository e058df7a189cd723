"""lp_prune: language-targeted pruning of multilingual LLMs, measured.

Public entry points: `lp_prune.load_masks(run_dir)` and the `lp-prune` command line.
"""

from lp_prune.tracking.run_dir import load_masks

__all__ = ["load_masks"]
__version__ = "0.1.0"
