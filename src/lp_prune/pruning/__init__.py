"""Pure tensor maths of pruning: statistics, SparseGPT, Wanda, magnitude, masks, the method seam, and
the quantization methods behind it (GPTQ, round-to-nearest) with their grid.

Nothing here imports Lightning, W&B or transformers, so each piece can be tested alone.
"""

from lp_prune.pruning.gptq import GPTQResult, gptq_quantize
from lp_prune.pruning.hessian import inverse_hessian_factor
from lp_prune.pruning.magnitude import magnitude_mask
from lp_prune.pruning.masks import lowest_mask, n_m_mask, score_mask, unstructured_mask
from lp_prune.pruning.method import (
    Capabilities,
    GroupInputs,
    MaskOnlyMethod,
    PruneContext,
    PrunedWeight,
    PruningMethod,
    Runtime,
)
from lp_prune.pruning.quantize import round_to_nearest
from lp_prune.pruning.registry import build_method, method_named, method_names, register
from lp_prune.pruning.sparsegpt import SparseGPTResult, sparsegpt_prune
from lp_prune.pruning.statistics import InputStatistics, gram
from lp_prune.pruning.wanda import wanda_mask, wanda_scores

__all__ = [
    "Capabilities",
    "GPTQResult",
    "GroupInputs",
    "InputStatistics",
    "MaskOnlyMethod",
    "PruneContext",
    "PrunedWeight",
    "PruningMethod",
    "Runtime",
    "SparseGPTResult",
    "build_method",
    "gptq_quantize",
    "gram",
    "inverse_hessian_factor",
    "lowest_mask",
    "magnitude_mask",
    "method_named",
    "method_names",
    "n_m_mask",
    "register",
    "round_to_nearest",
    "score_mask",
    "sparsegpt_prune",
    "unstructured_mask",
    "wanda_mask",
    "wanda_scores",
]
