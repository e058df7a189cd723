"""The downstream-evaluation step of a pruning run (pipeline.run): lm-eval tasks on the in-memory
dense model before pruning and on the pruned model after it, into summary.json and W&B.

    downstream = DownstreamStep(config, tokenizer)   # checks task names, writes the proxy tasks
    downstream.evaluate("dense", model, timings)     # before pruning (only with eval.dense_baseline)
    downstream.evaluate("pruned", model, timings)    # after pruning
    downstream.add_to(summary, loggers)              # summary["downstream"] and W&B

Does nothing at all when eval.tasks is empty (the default).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch.loggers import Logger

from lp_prune.config import RunConfig
from lp_prune.evaluation.downstream import (
    TaskPlan,
    evaluate_downstream,
    format_table,
    metric_names,
    plan_tasks,
    stderr_of,
)
from lp_prune.tracking import wandb_logger as tracking

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["stage", "task", "language", "metric", "value", "stderr", "n"]


class DownstreamStep:
    def __init__(self, config: RunConfig, tokenizer: Any) -> None:
        self.eval = config.eval
        self.tokenizer = tokenizer
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self.plan: TaskPlan | None = None
        if self.eval.tasks:
            self.plan = plan_tasks(
                self.eval.tasks,
                config.data.eval_languages,
                config.data.eval_fraction,
                calibration_languages=list(config.data.calibration_counts()),
            )

    def evaluate(self, stage: str, model: Any, timings: dict[str, float]) -> None:
        if self.plan is None or (stage == "dense" and not self.eval.dense_baseline):
            return
        start = time.perf_counter()
        self.results[stage] = evaluate_downstream(
            model,
            self.tokenizer,
            self.plan,
            limit=self.eval.limit,
            num_fewshot=self.eval.num_fewshot,
            batch_size=self.eval.batch_size,
        )
        timings[f"downstream_{stage}"] = time.perf_counter() - start

    def add_to(self, summary: dict[str, Any], loggers: Sequence[Logger]) -> None:
        if not self.results:
            return
        summary["downstream"] = self.results
        log_downstream(loggers, self.results)
        log.info("Downstream evaluation:\n%s", format_table(self.results))


def log_downstream(loggers: Sequence[Logger], downstream: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
    """Summary values `<metric>/<stage>/<task>` (acc/pruned/lp_prune_proxy_sw, ...) and a `downstream` table."""
    if not loggers:
        return
    tracking.update_summary(loggers, summary_values(downstream))
    tracking.log_table(loggers, "downstream", TABLE_COLUMNS, table_rows(downstream))


def summary_values(downstream: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, float]:
    return {
        f"{metric}/{stage}/{task}": result[metric]
        for stage, results in downstream.items()
        for task, result in results.items()
        for metric in metric_names(result)
        if isinstance(result[metric], int | float)
    }


def table_rows(downstream: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[list[Any]]:
    return [
        [stage, task, result.get("language"), metric, result[metric], stderr_of(result, metric), result.get("n")]
        for stage, results in downstream.items()
        for task, result in results.items()
        for metric in metric_names(result)
    ]
