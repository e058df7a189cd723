"""Downstream zero-shot evaluation of an in-memory model with lm-eval (no Lightning, no W&B).

    plan = plan_tasks(["proxy", "belebele"], languages=["en", "sw"], eval_fraction=0.2)
    results = parse_output(run_lm_eval(model, tokenizer, plan, limit=20))
    # {"lp_prune_proxy_en": {"acc": 0.62, "acc_stderr": 0.07, "acc_norm": ..., "language": "en", ...}}

Which tasks the shorthands name per language, and which languages a task lacks, are the task rules
of lp_prune.config.tasks. The study's tasks run by name and need the Hugging Face Hub for their
data; the offline proxies (`lp_prune_proxy_<lang>`, see proxy_tasks.py) and the offline probe
(`lp_prune_probe_<family>_<lang>`, see probe.py) and CLDR probe (`lp_prune_cldr_<family>_<lang>`,
see probe_cldr.py) run anywhere: when every task is local the Hub is
switched off for the evaluation (lp_prune.storage.hub), so nothing tries to reach it.

A user's own lm-eval task folders come in through `include_path` (lm-eval's TaskManager
include_path); task lists may be comma-separated strings as on lm-eval's command line
("belebele,arc"). lm-eval's own output (versions, task configs, n-shot, per-task metrics; no
per-sample logs) is kept beside summary.json in RUN_DIR/lm_eval_results.json, one entry per stage.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lp_prune.config.tasks import (
    TASK_SHORTHANDS,
    cldr_language,
    expand_tasks,
    is_local,
    is_packaged,
    probe_language,
    proxy_language,
    split_list,
    task_language,
)
from lp_prune.errors import ConfigError, DataError
from lp_prune.evaluation.probe import write_probe_tasks
from lp_prune.evaluation.probe_cldr import write_cldr_tasks
from lp_prune.evaluation.proxy_tasks import DEFAULT_ITEMS, write_proxy_tasks
from lp_prune.storage.hub import hub_offline

PACKAGED_TASKS = Path(__file__).parent / "tasks"  # lm-eval task YAMLs shipped with lp_prune (MKQA)
LM_EVAL_RESULTS_FILE = "lm_eval_results.json"  # lm-eval's own output per stage, in the run directory

_STDERR_SUFFIX = "_stderr"


ITEMS_KEY = "items"  # per-item scores of a task result: {"ids": [...], "<metric>": [value per item]}


@dataclass(frozen=True)
class TaskPlan:
    """Resolved lm-eval task names and where lm-eval finds the ones that are not its own."""

    tasks: tuple[str, ...]
    include_paths: tuple[Path, ...]
    needs_builtin: bool  # some task comes from lm-eval's own index (slow to build: ~15 s)
    local_only: bool  # every task's data is on this machine: evaluate with the Hub switched off


def plan_tasks(
    names: Sequence[str],
    languages: Sequence[str],
    eval_fraction: float,
    n_items: int | None = DEFAULT_ITEMS,
    include_path: Sequence[str | os.PathLike[str]] = (),
    calibration_languages: Sequence[str] = (),
) -> TaskPlan:
    """Expand shorthands, write the proxy and probe tasks asked for, check every name against lm-eval.

    include_path: the user's own lm-eval task folders; their tasks need no index of lm-eval's own
    (~15 s to build), which is only read for names found nowhere else.
    Call it before any weights load: an unknown name is a ConfigError here, not after an hour.
    """
    tasks = expand_tasks(split_list(names), languages, calibration_languages)
    if not tasks:
        raise ConfigError(f"eval.tasks {list(names)} leaves no task for languages {', '.join(languages)}")
    proxies = [lang for task in tasks if (lang := proxy_language(task))]
    include: list[Path] = [write_proxy_tasks(proxies, eval_fraction, n_items)] if proxies else []
    if any(probe_language(task) for task in tasks):
        include.append(write_probe_tasks())
    if any(cldr_language(task) for task in tasks):
        include.append(write_cldr_tasks())
    if any(is_packaged(task) for task in tasks):
        include.append(PACKAGED_TASKS)
    user_paths = tuple(Path(path).expanduser().absolute() for path in include_path)
    include += user_paths
    others = [task for task in tasks if not is_local(task) and not is_packaged(task)]
    if user_paths:  # the user's own tasks need no index of lm-eval's
        user_index = _task_manager(user_paths, False).task_index
        others = [task for task in others if task not in user_index]
    plan = TaskPlan(tuple(tasks), tuple(include), needs_builtin=bool(others), local_only=all(map(is_local, tasks)))
    if others:
        _check_known(others, plan)
    return plan


def _check_known(tasks: Sequence[str], plan: TaskPlan) -> None:
    index = task_manager(plan).task_index  # names only: reading the index downloads nothing
    unknown = [task for task in tasks if task not in index]
    if unknown:
        raise ConfigError(
            f"eval.tasks: unknown task {', '.join(repr(t) for t in unknown)}: neither a shorthand "
            f"({', '.join(TASK_SHORTHANDS)}) nor a task in lm-eval's index or eval.include_path"
        )


def task_manager(plan: TaskPlan) -> Any:
    return _task_manager(plan.include_paths, plan.needs_builtin)


@functools.lru_cache(maxsize=4)
def _task_manager(include_paths: tuple[Path, ...], include_defaults: bool) -> Any:
    # Indexing lm-eval's own ~15k task YAMLs takes seconds: build each index once per process.
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(p) for p in include_paths] or None, include_defaults=include_defaults)


def run_lm_eval(
    model: Any,
    tokenizer: Any,
    plan: TaskPlan,
    *,
    limit: int | None = None,
    num_fewshot: int = 0,
    batch_size: int = 8,
) -> dict[str, Any]:
    """lm-eval's own output for the plan's tasks on the in-memory model, JSON-safe (`lm_eval_json`):
    `results` (per-task metrics), `configs`, `versions`, `n-shot`, `n-samples`, `higher_is_better`,
    `config` (limit, seeds, ...), library versions and the environment, and per task the score of
    every item (`items`: lp_prune's paired comparisons), not lm-eval's per-sample logs."""
    import lm_eval

    from lp_prune.evaluation.focused_lm import FocusedHFLM

    with hub_offline(plan.local_only), _quiet_lm_eval():
        lm = FocusedHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        try:
            output = lm_eval.simple_evaluate(
                model=lm,
                tasks=list(plan.tasks),
                task_manager=task_manager(plan),
                limit=limit,
                num_fewshot=num_fewshot,
                log_samples=True,  # per-item scores: paired comparisons between recipes on the same items
                # lm-eval reseeds the global random generators by default; a run's own seeded
                # state must not change because evaluation was switched on.
                random_seed=None,
                numpy_random_seed=None,
                torch_random_seed=None,
            )
        except ConnectionError as err:
            raise DataError(
                f"downstream task data could not be loaded ({err}); the study's tasks need the Hugging "
                "Face Hub: offline, use the proxy or probe tasks (eval.tasks: [proxy] or [probe])"
            ) from err
    items = per_item_scores(output.pop("samples", None) or {})  # the per-sample logs themselves go
    result = lm_eval_json(output)
    result[ITEMS_KEY] = items
    return result


def parse_output(output: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{task: {metric: value, "language": lang, "items": per-item scores}} from `run_lm_eval`'s output."""
    results = parse_results(output["results"])
    for task, items in (output.get(ITEMS_KEY) or {}).items():
        if task in results:
            results[task][ITEMS_KEY] = items
    return results


def lm_eval_json(value: Any) -> Any:
    """lm-eval's output as plain JSON: non-finite floats -> None, numpy scalars -> numbers, dtypes and
    other objects -> their text, functions (task configs' process_results, ...) -> their dotted name."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): lm_eval_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [lm_eval_json(item) for item in value]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return lm_eval_json(value.item())
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}".lstrip(".")
    return str(value)


# Sections of lm-eval's output keyed by task (or group): merged task by task when a later
# `lp-prune eval` adds or replaces tasks; the other keys describe the latest evaluation.
_PER_TASK_SECTIONS = (
    "results",
    "groups",
    "group_subtasks",
    "configs",
    "versions",
    "n-shot",
    "higher_is_better",
    "n-samples",
)


def merge_lm_eval_output(stored: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """One stage's lm-eval output with `new` evaluated tasks added (replacing the same tasks)."""
    merged = {**stored, **{key: value for key, value in new.items() if key not in _PER_TASK_SECTIONS}}
    for section in _PER_TASK_SECTIONS:
        if section in stored or section in new:
            merged[section] = {**(stored.get(section) or {}), **(new.get(section) or {})}
    return merged


def write_lm_eval_results(run_dir: str | os.PathLike[str], outputs: Mapping[str, Mapping[str, Any]]) -> Path:
    """Merge {stage: lm-eval output} into RUN_DIR/lm_eval_results.json (atomically); return its path."""
    from lp_prune.storage.files import read_json, write_json

    path = Path(run_dir) / LM_EVAL_RESULTS_FILE
    stored = read_json(path) if path.is_file() else {}
    for stage, output in outputs.items():
        stored[stage] = merge_lm_eval_output(stored.get(stage) or {}, lm_eval_json(output))
    write_json(path, stored)
    return path


def per_item_scores(samples: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, list[Any]]]:
    """lm-eval's logged samples -> {task: {"ids": [item id], metric: [score per item]}}, in doc order.

    The id is the document's own "id" field when it has one (the proxy items: stable across runs of
    the same text and settings), else lm-eval's doc_id (its position in the task's split). Only
    numeric per-item scores are kept (acc, acc_norm, exact_match, f1; 0/1 stored as ints).
    """
    out: dict[str, dict[str, list[Any]]] = {}
    for task, examples in samples.items():
        by_filter: dict[str, list[Mapping[str, Any]]] = {}
        for example in examples:  # a task with several filters logs every document once per filter
            by_filter.setdefault(example.get("filter", "none"), []).append(example)
        scores: dict[str, list[Any]] = {}
        for filter_name, group in by_filter.items():
            ordered = sorted(group, key=lambda example: example["doc_id"])
            scores.setdefault("ids", [_item_id(example) for example in ordered])
            for metric in ordered[0].get("metrics", []):
                values = [example.get(metric) for example in ordered]
                if all(isinstance(v, int | float) for v in values):
                    name = metric if filter_name == "none" else f"{metric}/{filter_name}"
                    scores[name] = [int(v) if float(v) in (0.0, 1.0) else float(v) for v in values]
        if scores:
            out[task] = scores
    return out


def _item_id(example: Mapping[str, Any]) -> Any:
    doc = example.get("doc")
    return doc["id"] if isinstance(doc, Mapping) and "id" in doc else example["doc_id"]


def parse_results(results: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """lm-eval's {"acc,none": 0.5, "acc_stderr,none": 0.1, ...} -> {"acc": 0.5, "acc_stderr": 0.1, ...}.

    Metrics under a filter other than "none" keep it: "exact_match/strict-match". Stderrs lm-eval
    could not compute ("N/A") become None. `n` is the number of items scored.
    """
    parsed: dict[str, dict[str, Any]] = {}
    for task, values in results.items():
        metrics: dict[str, Any] = {}
        for key, value in values.items():
            metric, comma, filter_name = key.partition(",")
            if comma:
                name = metric if filter_name == "none" else f"{metric}/{filter_name}"
                metrics[name] = value if isinstance(value, int | float) else None
        if "sample_len" in values:
            metrics["n"] = values["sample_len"]
        metrics["language"] = task_language(task)
        parsed[task] = metrics
    return parsed


def metric_names(result: Mapping[str, Any]) -> list[str]:
    """The scores of one task's result (acc, acc_norm, exact_match, ...), without stderrs and extras."""
    return [
        key
        for key in result
        if key not in ("language", "n", ITEMS_KEY) and not key.endswith(_STDERR_SUFFIX) and "_stderr/" not in key
    ]


def stderr_of(result: Mapping[str, Any], metric: str) -> float | None:
    base, slash, filter_name = metric.partition("/")
    return result.get(f"{base}{_STDERR_SUFFIX}{slash}{filter_name}")


def format_table(downstream: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """{stage: {task: result}} as an aligned text table, one row per task and stage."""
    rows = [("task", "lang", "stage", "n", "scores (± stderr)")]
    tasks = list(dict.fromkeys(task for results in downstream.values() for task in results))
    for task in tasks:
        for stage, results in downstream.items():
            if task in results:
                result = results[task]
                scores = "  ".join(_score(result, metric) for metric in metric_names(result))
                rows.append((task, result.get("language") or "-", stage, str(result.get("n", "-")), scores))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)), row[4]]) for row in rows)


def _score(result: Mapping[str, Any], metric: str) -> str:
    value, stderr = result.get(metric), stderr_of(result, metric)
    text = f"{metric}=" + ("n/a" if value is None else f"{value:.3f}")
    return text + (f"±{stderr:.3f}" if isinstance(stderr, int | float) else "")


@contextlib.contextmanager
def _quiet_lm_eval() -> Iterator[None]:
    """lm-eval logs every request batch and setting at INFO; keep its warnings and errors only. Its
    record of the git commit asks git with stderr open, which prints `fatal: not a git repository`
    outside one: the same question is asked quietly instead."""
    import lm_eval.evaluator

    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    ask_git = lm_eval.evaluator.get_git_commit_hash
    lm_eval.evaluator.get_git_commit_hash = _git_commit
    try:
        yield
    finally:
        logger.setLevel(level)
        lm_eval.evaluator.get_git_commit_hash = ask_git


def _git_commit() -> str | None:
    """What lm-eval records as `git_hash`: `git describe --always` in the working folder, else the commit
    its .git folder names; None outside a repository. git's own complaints are not shown."""
    from lm_eval.loggers.utils import get_commit_from_path

    try:
        described = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        described = None
    if described is not None and described.returncode == 0:
        return described.stdout.strip()
    return get_commit_from_path(os.getcwd())
