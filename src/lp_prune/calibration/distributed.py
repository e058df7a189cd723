"""Data-parallel calibration: statistics are sums, so processes add theirs before the solve.

Every process sees its own share of the calibration windows. Summing the Gram matrices (or squared
norms) and the token/sample counts over processes gives exactly the statistics of all windows, so
every process then solves the same problem; rank 0's result is broadcast so that the weights are
bit-identical everywhere whatever the kernels do.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from lp_prune.pruning.statistics import InputStatistics


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_statistics(stats: InputStatistics) -> None:
    """Sum the statistics over all processes, in place (a no-op in a single process)."""
    if not distributed():
        return
    dist.all_reduce(stats.accumulator, op=dist.ReduceOp.SUM)
    counts = torch.tensor([stats.tokens, stats.samples], dtype=torch.int64, device=stats.accumulator.device)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    stats.tokens, stats.samples = int(counts[0]), int(counts[1])


def broadcast_from_rank_zero(*tensors: torch.Tensor) -> None:
    """Overwrite the tensors with rank 0's values, in place (a no-op in a single process)."""
    if not distributed():
        return
    for tensor in tensors:
        dist.broadcast(tensor, src=0)
