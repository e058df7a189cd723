"""The layer pruner: input statistics in, pruned Linears out. No Lightning.

Linears that read the same input (q/k/v, gate/up) share one statistics object and form one solve
unit: SparseGPT factorises their Hessian once and runs one column loop over their stacked rows.
Per unit, the pruner sums the statistics over processes (data parallel) on the unit's owner, which
solves it and measures every Linear on its calibration inputs; the owner's pruned weights, packed
masks, records and quantization grids are then broadcast, and every process installs the weights in
its model.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields, replace

import torch
from torch import nn

from lp_prune.calibration import distributed
from lp_prune.calibration.results import LinearResult, ModuleRecord
from lp_prune.config import PruneConfig
from lp_prune.errors import NumericalError
from lp_prune.metrics.pruning_error import error_from_sums, error_sums, local_error, sparsity
from lp_prune.models.layers import projection
from lp_prune.pruning.grid import QuantGrid
from lp_prune.pruning.hessian import all_finite
from lp_prune.pruning.masks import PackedMask, packed_mask
from lp_prune.pruning.method import GroupInputs, PrunedWeight, Runtime
from lp_prune.pruning.statistics import InputStatistics, TokenSample
from lp_prune.runtime import factor_threads, single_thread

NO_LOCAL_ERROR = {"error": math.nan, "rel_error": math.nan, "snr_db": math.nan}
RECORD_VALUES = [f.name for f in fields(ModuleRecord) if f.name not in ("layer", "module", "numel")]


@dataclass
class SolveUnit:
    """Linears (full name -> module) that read one input, and that input's statistics."""

    linears: dict[str, nn.Linear]
    stats: InputStatistics | None

    @property
    def cost(self) -> float:
        """Solve FLOPs, up to a constant: d_out x d_in^2 (updates, metrics) + d_in^3 (factorisation)."""
        d_in = next(iter(self.linears.values())).in_features
        return sum(linear.out_features for linear in self.linears.values()) * d_in**2 + d_in**3


class LayerPruner:
    """Prunes groups of Linears; `layer_sparsity` gives one sparsity per decoder layer (OWL), else
    every layer gets config.sparsity."""

    def __init__(
        self,
        config: PruneConfig,
        layer_sparsity: list[float] | None = None,
        calibration_tokens: int = 0,
        window_weights: torch.Tensor | None = None,
        heads: tuple[int, int, int] | None = None,
    ) -> None:
        self.config = config
        self.method = config.method
        self.context = config.context if heads is None else replace(config.context, heads=heads)
        self.layer_sparsity = layer_sparsity
        self.metrics = config.local_error_mode
        sample = TokenSample(config.metric_tokens, calibration_tokens, seed=0) if self.metrics == "sample" else None
        # How the statistics are gathered (InputCollector's keywords): the Gram or only norms, the token
        # sample of the metrics, and the weight of each calibration window (balanced / weighted mixes).
        self.statistics_options = {"keep_gram": self.keep_gram, "sample": sample, "weights": window_weights}

    @property
    def needs_statistics(self) -> bool:
        """A method that reads no statistics (magnitude) sees no data, unless its metrics are sampled."""
        return self.method.statistics != "none" or self.metrics != "off"

    @property
    def keep_gram(self) -> bool:
        """The full X^T X: for methods that read it (SparseGPT's Hessian), and for exact error metrics."""
        return self.method.statistics == "gram" or self.metrics == "exact"

    def sparsity_of(self, layer: int) -> float:
        return self.config.sparsity if self.layer_sparsity is None else self.layer_sparsity[layer]

    def prune(
        self, layer: int, linears: dict[str, nn.Linear], statistics: dict[str, InputStatistics] | None
    ) -> list[LinearResult]:
        """Prune every Linear (full module name -> module) with its statistics (None: magnitude)."""
        units = solve_units(linears, statistics)
        owners = distributed.assign_owners([unit.cost for unit in units], distributed.world_size())
        self._check_inputs(layer, units)
        for unit, owner in zip(units, owners, strict=True):
            if unit.stats is not None:
                distributed.sum_statistics(unit.stats, owner=owner)
        solved = {
            index: self._solve(layer, unit)
            for index, (unit, owner) in enumerate(zip(units, owners, strict=True))
            if owner == distributed.rank()
        }
        results = []
        for index, (unit, owner) in enumerate(zip(units, owners, strict=True)):
            results += self._share(layer, unit, solved.get(index), owner)
        return results

    def _check_inputs(self, layer: int, units: list[SolveUnit]) -> None:
        """Non-finite weights or inputs stop every process together, naming the first bad Linear."""
        for unit in units:
            for name, linear in unit.linears.items():
                device = linear.weight.device
                if distributed.anywhere(not all_finite(linear.weight), device):
                    raise NumericalError(f"layer {layer}, module {name}: the weights hold NaN or inf before pruning")
                bad_inputs = unit.stats is not None and not all_finite(unit.stats.accumulator)
                if distributed.anywhere(bad_inputs, device):
                    raise NumericalError(f"layer {layer}, module {name}: its calibration inputs hold NaN or inf")

    def _solve(self, layer: int, unit: SolveUnit) -> list[tuple[PrunedWeight, ModuleRecord]]:
        """This process's unit: prune, then measure each Linear. The float64 Gram goes as soon as its
        float32 copy exists (the copy serves the exact metrics; the Hessian is a scaled second copy
        that the solve consumes)."""
        stats = unit.stats
        kinds = tuple(projection(name) for name in unit.linears)
        inputs = GroupInputs(projections=kinds)
        if stats is not None:  # the norms first: without the float64 Gram they are gone
            inputs = GroupInputs(sq_norms=stats.sq_norms, samples=stats.samples, projections=kinds)
            if stats.gram is not None:
                inputs.gram = stats.gram.float()
                stats.release_gram()
        gram32 = inputs.gram
        dense = [linear.weight.detach() for linear in unit.linears.values()]
        runtime = Runtime(column_loop=single_thread, factorisation=factor_threads)
        pruned = self.method.prune(dense, self.sparsity_of(layer), inputs, self.context, runtime)
        exact = (gram32, stats.tokens) if gram32 is not None and self.metrics == "exact" else None
        return [
            (result, measure(layer, name, weight, result, exact))
            for (name, weight), result in zip(zip(unit.linears, dense, strict=True), pruned, strict=True)
        ]

    def _share(
        self, layer: int, unit: SolveUnit, solved: list[tuple[PrunedWeight, ModuleRecord]] | None, owner: int
    ) -> list[LinearResult]:
        """Broadcast the owner's results; every process installs the weights and checks them."""
        results = []
        for index, (name, linear) in enumerate(unit.linears.items()):
            device = linear.weight.device
            if solved is not None:
                result, record = solved[index]
                weight, mask, grid = result.weight, packed_mask(result.mask), result.grid
            else:
                weight = torch.empty_like(linear.weight)
                mask = PackedMask(torch.empty((linear.weight.numel() + 7) // 8, dtype=torch.uint8), linear.weight.shape)
                record = grid = None
            distributed.broadcast(weight, owner)
            if distributed.distributed():
                bits = distributed.broadcast(mask.bits.to(device), owner).cpu()
                mask = PackedMask(bits, tuple(linear.weight.shape))
                record = _broadcast_record(record, layer, name, linear, owner)
                grid = _broadcast_grid(grid, linear, owner)
            if distributed.anywhere(not torch.isfinite(weight).all(), device):
                raise NumericalError(f"layer {layer}, module {name}: pruning produced NaN or inf weights")
            if self.metrics == "sample" and unit.stats is not None:
                sampled_error(record, linear.weight.detach(), weight, unit.stats.sample_inputs())
            # A new tensor, not a copy into the old one: a weight memory-mapped from its file would take
            # a copy-on-write fault per page, and the dense weight stays intact for the metrics.
            linear.weight.data = weight
            results.append(LinearResult(name, weight, mask, record, None if grid is None else grid.to("cpu")))
        return results


def solve_units(linears: dict[str, nn.Linear], statistics: dict[str, InputStatistics] | None) -> list[SolveUnit]:
    """Linears grouped by their statistics object (shared input), in the order they appear."""
    if statistics is None:  # magnitude: every Linear alone
        return [SolveUnit({name: linear}, None) for name, linear in linears.items()]
    units: dict[int, SolveUnit] = {}
    for name, linear in linears.items():
        stats = statistics[name]
        units.setdefault(id(stats), SolveUnit({}, stats)).linears[name] = linear
    return list(units.values())


def measure(
    layer: int,
    name: str,
    dense: torch.Tensor,
    result: PrunedWeight,
    exact: tuple[torch.Tensor, int] | None,
) -> ModuleRecord:
    """Sparsity, and with `exact` = (float32 Gram, tokens) the error of the pruned weight on all its
    calibration inputs (NaN without: sampled metrics are filled in later, see `sampled_error`)."""
    local = NO_LOCAL_ERROR
    if exact is not None:
        error = local_error(dense, result.weight, *exact)
        local = {"error": error.error, "rel_error": error.rel_error, "snr_db": error.snr_db}
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


def sampled_error(record: ModuleRecord, dense: torch.Tensor, pruned: torch.Tensor, sample: torch.Tensor) -> None:
    """Fill the record's error, relative error and SNR from the sampled tokens of every process."""
    signal, noise = error_sums(dense, pruned, sample)
    sums = distributed.sum_values([signal, noise, float(sample.shape[0])], dense.device)
    error = error_from_sums(sums[0], sums[1], int(sums[2]))
    record.error, record.rel_error, record.snr_db = error.error, error.rel_error, error.snr_db


def _broadcast_record(
    record: ModuleRecord | None, layer: int, name: str, linear: nn.Linear, owner: int
) -> ModuleRecord:
    """The owner's record on every process (its numbers travel as one float64 tensor; None as NaN)."""
    values = [math.nan if v is None else v for v in astuple(record)[3:]] if record else [0.0] * len(RECORD_VALUES)
    tensor = distributed.broadcast(torch.tensor(values, dtype=torch.float64, device=linear.weight.device), owner)
    received = dict(zip(RECORD_VALUES, tensor.tolist(), strict=True))
    for key in ("solver_loss", "percdamp"):
        received[key] = None if math.isnan(received[key]) else received[key]
    return ModuleRecord(layer=layer, module=name, numel=linear.weight.numel(), **received)


def _broadcast_grid(grid: QuantGrid | None, linear: nn.Linear, owner: int) -> QuantGrid | None:
    """The owner's quantization grid on every process (None where its method records none): first its
    settings and number of groups, which the other processes cannot know, then its tensors."""
    device = linear.weight.device
    head = [0] * 6
    if grid is not None:
        head = [1, grid.groups, grid.bits, int(grid.symmetric), grid.group_size or 0, int(grid.g_idx is not None)]
    sent = distributed.broadcast(torch.tensor(head, dtype=torch.int64, device=device), owner).tolist()
    present, groups, bits, symmetric, size, indexed = sent
    if not present:
        return None
    rows, columns = linear.weight.shape
    if grid is None:
        tensors = [torch.empty(rows, groups), torch.empty(rows, groups)]
        tensors += [torch.empty(columns, dtype=torch.int64)] if indexed else []
    else:
        tensors = [grid.scale, grid.zero, *([grid.g_idx] if indexed else [])]
    scale, zero, *g_idx = [distributed.broadcast(t.to(device).contiguous(), owner).cpu() for t in tensors]
    return QuantGrid(scale, zero, bits, bool(symmetric), size or None, g_idx[0] if g_idx else None)
