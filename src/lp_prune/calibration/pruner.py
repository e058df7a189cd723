"""The layer pruner: input statistics in, pruned Linears out. No Lightning.

For each Linear of a group it sums the statistics over processes (data parallel), prunes the weight
(SparseGPT, Wanda or magnitude) at its layer's sparsity, makes the result identical on every
process, installs the new weight in the model and measures it on its calibration inputs.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from lp_prune.calibration.distributed import broadcast_from_rank_zero, sum_statistics
from lp_prune.calibration.results import LinearResult, ModuleRecord
from lp_prune.config import PruneConfig
from lp_prune.errors import NumericalError
from lp_prune.metrics.pruning_error import local_error, sparsity
from lp_prune.pruning.masks import packed_mask
from lp_prune.pruning.methods import METHOD_NEEDS_GRAM, PrunedWeight, prune_weight
from lp_prune.pruning.statistics import InputStatistics
from lp_prune.runtime import single_thread

NO_LOCAL_ERROR = {"error": float("nan"), "rel_error": float("nan"), "snr_db": float("nan")}


class LayerPruner:
    """Prunes groups of Linears; `layer_sparsity` gives one sparsity per decoder layer (OWL), else
    every layer gets config.sparsity."""

    def __init__(self, config: PruneConfig, layer_sparsity: list[float] | None = None) -> None:
        self.config = config
        self.layer_sparsity = layer_sparsity

    @property
    def needs_statistics(self) -> bool:
        """Magnitude pruning sees no data."""
        return self.config.method != "magnitude"

    @property
    def keep_gram(self) -> bool:
        """The full X^T X: SparseGPT's Hessian, and every method's local error metrics."""
        return self.config.local_error or METHOD_NEEDS_GRAM[self.config.method]

    def sparsity_of(self, layer: int) -> float:
        return self.config.sparsity if self.layer_sparsity is None else self.layer_sparsity[layer]

    def prune(
        self, layer: int, linears: dict[str, nn.Linear], statistics: dict[str, InputStatistics] | None
    ) -> list[LinearResult]:
        """Prune every Linear (full module name -> module) with its statistics (None: magnitude)."""
        return [
            self._prune_one(layer, name, linear, statistics[name] if statistics else None)
            for name, linear in linears.items()
        ]

    def _prune_one(self, layer: int, name: str, linear: nn.Linear, stats: InputStatistics | None) -> LinearResult:
        dense = linear.weight.detach()  # never written: the pruned weight replaces it below
        check_finite(dense, f"layer {layer}, module {name}: the weights hold NaN or inf before pruning")
        if stats is not None:
            sum_statistics(stats)
            check_finite(stats.sq_norms, f"layer {layer}, module {name}: its calibration inputs hold NaN or inf")
        config = self.config
        result = prune_weight(
            config.method,
            dense,
            stats,
            self.sparsity_of(layer),
            config.n_m,
            config.blocksize,
            config.percdamp,
            column_loop=single_thread,
        )
        broadcast_from_rank_zero(result.weight, result.mask.view(torch.uint8))  # identical on every process
        check_finite(result.weight, f"layer {layer}, module {name}: pruning produced NaN or inf weights")
        # A new tensor, not a copy into the old one: a weight memory-mapped from its file would take
        # a copy-on-write fault per page, and the dense weight stays intact for the metrics.
        linear.weight.data = result.weight
        record = measure(layer, name, dense, result, stats)
        return LinearResult(name, result.weight, packed_mask(result.mask), record)


def measure(
    layer: int, name: str, dense: torch.Tensor, result: PrunedWeight, stats: InputStatistics | None
) -> ModuleRecord:
    """Sparsity, and the error of the pruned weight on the calibration inputs (from their Gram)."""
    if stats is not None and stats.gram is not None:
        local = asdict(local_error(dense, result.weight, stats.gram, stats.tokens))
    else:  # magnitude pruning sees no data; Wanda without Gram keeps only norms
        local = dict(NO_LOCAL_ERROR)
    return ModuleRecord(
        layer=layer,
        module=name,
        numel=dense.numel(),
        sparsity=sparsity(result.weight),
        dense_zeros=sparsity(dense),
        solver_loss=result.solver_loss,
        percdamp=result.percdamp,
        **local,
    )


def check_finite(tensor: torch.Tensor, message: str) -> None:
    if not torch.isfinite(tensor).all():
        raise NumericalError(message)
