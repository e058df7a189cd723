"""Data-parallel calibration: statistics are sums, solves are shared out, results are broadcast.

Every process sees its own share of the calibration windows. Summing the float64 Gram matrices (or
squared norms) and the token/sample counts over processes gives the statistics of all windows.
Each group of Linears that share an input is solved by one process (its owner, chosen to balance
the solve cost), which receives the summed statistics and broadcasts the pruned weights, masks and
metrics; so every process ends with the same bits, and the solves run in parallel.
In a single process every function here is a no-op (or the obvious answer).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from lp_prune.pruning.statistics import InputStatistics


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if distributed() else 1


def sum_statistics(stats: InputStatistics, owner: int | None = None) -> None:
    """Sum the statistics over all processes, in place: on every process, or on `owner` only."""
    if not distributed():
        return
    counts = torch.tensor([stats.tokens, stats.samples], dtype=torch.int64, device=stats.accumulator.device)
    for tensor in (stats.accumulator, counts):
        if owner is None:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        else:
            dist.reduce(tensor, dst=owner, op=dist.ReduceOp.SUM)
    stats.tokens, stats.samples = int(counts[0]), int(counts[1])


def sum_values(values: list[float], device: torch.device) -> list[float]:
    """The values summed over all processes (float64)."""
    if not distributed():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast(tensor: torch.Tensor, src: int) -> torch.Tensor:
    """`tensor` with process `src`'s values, in place (CPU tensors travel through the other's device)."""
    if distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def anywhere(flag: bool, device: torch.device) -> bool:
    """True on every process when `flag` is True on any (so that all stop together, none waits)."""
    if not distributed():
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def assign_owners(costs: list[float], processes: int) -> list[int]:
    """Owner of each job: the least-loaded process, largest jobs first (ties to the lower rank)."""
    load = [0.0] * processes
    owners = [0] * len(costs)
    for job in sorted(range(len(costs)), key=lambda j: (-costs[j], j)):
        owner = min(range(processes), key=lambda p: (load[p], p))
        owners[job] = owner
        load[owner] += costs[job]
    return owners
