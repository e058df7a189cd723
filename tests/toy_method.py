"""A pruning method written outside the package, as a contributor would: one class and its registration.

`input_columns` prunes whole input columns, those whose inputs carry the least energy ||X_j||^2:
every row of a Linear loses the same columns, and the kept weights stay as they were.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lp_prune.errors import ConfigError
from lp_prune.pruning import GroupInputs, PruneContext, PrunedWeight, PruningMethod, Runtime


@dataclass(frozen=True)
class InputColumns(PruningMethod):
    name = "input_columns"
    statistics = "norms"

    def solver_bytes(self, width: int, rows: int) -> int:
        return width * 4

    def check(self, context: PruneContext) -> None:
        if context.n_m is not None:
            raise ConfigError("input_columns prunes whole columns: it has no N:M form")

    def prune(
        self,
        weights: Sequence[torch.Tensor],
        sparsity: float,
        inputs: GroupInputs,
        context: PruneContext,
        runtime: Runtime,
    ) -> list[PrunedWeight]:
        columns = torch.argsort(inputs.sq_norms, stable=True)[: int(sparsity * inputs.sq_norms.numel())]
        results = []
        for weight in weights:
            mask = torch.zeros_like(weight, dtype=torch.bool)
            mask[:, columns] = True
            results.append(PrunedWeight(weight.masked_fill(mask, 0), mask))
        return results
