"""The downstream-evaluation step of a pruning run (pipeline.run): lm-eval tasks on the in-memory
dense model before pruning and on the pruned model after it, into summary.json and W&B.

    downstream = DownstreamStep(config, tokenizer)   # checks task names, writes the proxy tasks
    downstream.evaluate("dense", model, timer)       # before pruning (only with eval.dense_baseline;
                                                     # cached per model and task set with eval.cache_dense)
    downstream.evaluate("pruned", model, timer)      # after pruning
    downstream.add_to(summary, loggers)              # summary.downstream and W&B
    downstream.save(run_dir)                         # lm-eval's own output: RUN_DIR/lm_eval_results.json

Does nothing at all when eval.tasks is empty (the default).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.loggers import Logger

from lp_prune.config import EvalConfig, ModelConfig, RunConfig
from lp_prune.evaluation.downstream import (
    TaskPlan,
    format_table,
    metric_names,
    parse_output,
    plan_tasks,
    run_lm_eval,
    stderr_of,
    write_lm_eval_results,
)
from lp_prune.evaluation.perplexity import dense_model_digest, read_cache_entry, write_cache_entry
from lp_prune.storage.cache_lock import cache_dir, compute_once
from lp_prune.tracking import wandb_logger

if TYPE_CHECKING:
    from lp_prune.storage.phase_timer import PhaseTimer
    from lp_prune.tracking.summary import RunSummary

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["stage", "task", "language", "metric", "value", "stderr", "n"]


class DownstreamStep:
    def __init__(self, config: RunConfig, tokenizer: Any) -> None:
        self.eval = config.eval
        self.model = config.model
        self.tokenizer = tokenizer
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self.lm_eval_outputs: dict[str, dict[str, Any]] = {}  # lm-eval's own output per stage
        self.plan: TaskPlan | None = None
        if self.eval.tasks:
            self.plan = plan_tasks(
                self.eval.tasks,
                self.eval.languages or config.data.eval_languages,
                config.data.eval_fraction,
                include_path=self.eval.include_paths,
                calibration_languages=config.recipe().languages,
            )

    def evaluate(self, stage: str, model: Any, timer: PhaseTimer) -> None:
        if self.plan is None or (stage == "dense" and not self.eval.dense_baseline):
            return
        with timer.phase(f"downstream_{stage}"):
            plan = self.plan

            def evaluate() -> dict[str, Any]:
                return run_lm_eval(
                    model,
                    self.tokenizer,
                    plan,
                    limit=self.eval.limit,
                    num_fewshot=self.eval.num_fewshot,
                    batch_size=self.eval.batch_size,
                )

            if stage == "dense" and self.eval.cache_dense:  # once per model and tasks (storage.cache_lock)
                path = dense_downstream_path(self.model, plan, self.eval)
                store = partial(write_cache_entry, path, what=DENSE_CACHE)
                output = compute_once(path, partial(read_dense_output, path), evaluate, store, DENSE_CACHE)
            else:
                output = evaluate()
            self.lm_eval_outputs[stage] = output
            self.results[stage] = parse_output(output)

    def release_tokenizer(self) -> None:
        """Let the tokenizer go: no task will run (lm-eval is its only user here)."""
        if self.plan is None:
            self.tokenizer = None

    def add_to(self, summary: RunSummary, loggers: Sequence[Logger]) -> None:
        if not self.results:
            return
        summary.downstream = self.results
        log_downstream(loggers, self.results)
        log.info("Downstream evaluation:\n%s", format_table(self.results))

    def save(self, run_dir: str | os.PathLike[str]) -> Path | None:
        """lm-eval's own output per stage into RUN_DIR/lm_eval_results.json; None when no task ran."""
        return write_lm_eval_results(run_dir, self.lm_eval_outputs) if self.lm_eval_outputs else None


DENSE_CACHE = "dense downstream"


def read_dense_output(path: Path) -> dict[str, Any] | None:
    """The cached lm-eval output of the dense model, or None (missing, or not lm-eval's output)."""
    output = read_cache_entry(path, DENSE_CACHE)
    return output if isinstance((output or {}).get("results"), dict) else None


def dense_downstream_path(model: ModelConfig, plan: TaskPlan, settings: EvalConfig) -> Path:
    """Cache entry of the dense model's lm-eval output: one per model (as for dense perplexity), task
    list, task files (the proxy and probe folders' contents), limit, shots and batch size."""
    digest = dense_model_digest(model)
    keys = [list(plan.tasks), settings.limit, settings.num_fewshot, settings.batch_size]
    digest.update(json.dumps(keys).encode())
    for folder in plan.include_paths:
        for file in sorted(Path(folder).rglob("*")):
            if file.is_file():
                digest.update(str(file.relative_to(folder)).encode())
                digest.update(hashlib.sha256(file.read_bytes()).digest())
    return cache_dir() / "dense_downstream" / f"{digest.hexdigest()[:24]}.json"


def log_downstream(loggers: Sequence[Logger], downstream: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
    """Summary values `<metric>/<stage>/<task>` (acc/pruned/lp_prune_proxy_sw, ...) and a `downstream` table."""
    if not loggers:
        return
    wandb_logger.update_summary(loggers, summary_values(downstream))
    wandb_logger.log_table(loggers, "downstream", TABLE_COLUMNS, table_rows(downstream))


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
