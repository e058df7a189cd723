"""What the commands print when they finish: results tables, progress lines, where things are.

Pure formatting of what the runs wrote (summary dicts, paths): no model, no W&B session. The W&B
location of a run is its URL when it ran online, or the exact `wandb sync` command that uploads it
when it ran offline.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lp_prune.config import LANGUAGES

WANDB_FOLDER = "wandb"
_SCORE_PREFERENCE = ("acc", "exact_match", "acc_norm", "f1")  # the score a task's row shows


# ---------------------------------------------------------------------------------------------------
# Where the W&B run is


def find_offline_run(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest `offline-run-*` folder under RUN_DIR/wandb (a resumed run has one per attempt), or None."""
    folder = Path(run_dir) / WANDB_FOLDER
    if not folder.is_dir():
        return None
    runs = [path for path in folder.glob("offline-run-*") if path.is_dir() and not path.is_symlink()]
    # Names carry the start time to the second ("offline-run-20250101_120000-<id>"); mtime breaks ties.
    return max(runs, key=lambda path: (path.name.split("-")[2], path.stat().st_mtime), default=None)


def wandb_line(run_dir: str | os.PathLike[str], url: str | None = None) -> str | None:
    """'W&B: <url>' for an online run, 'W&B (offline): wandb sync <folder>' for an offline one, None
    when the run logged nothing to W&B."""
    if url:
        return f"W&B: {url}"
    offline = find_offline_run(run_dir)
    return f"W&B (offline): wandb sync {shlex.quote(str(offline))}" if offline else None


# ---------------------------------------------------------------------------------------------------
# The end of a run


def format_run_results(summary: Mapping[str, Any], run_dir: str | os.PathLike[str], wandb_line: str | None) -> str:
    """The results of a run as the terminal shows them when it ends (summary: the run's summary.json)."""
    lines = [_headline(summary), *_perplexity_table(summary), *_downstream_table(summary.get("downstream") or {})]
    sparsity = summary.get("sparsity")
    if sparsity is not None:
        zeros = summary.get("dense_zeros")
        before = f" ({_percent(zeros)} zero before pruning)" if zeros else ""
        lines.append(f"Sparsity {_percent(sparsity)} of the prunable weights{before}")
    seconds = (summary.get("timings_s") or {}).get("prune")
    if seconds is not None:
        lines.append(f"Pruning took {format_duration(seconds)}")
    lines.append(f"Run directory: {run_dir}")
    if wandb_line:
        lines.append(wandb_line)
    return "\n".join(lines)


def _headline(summary: Mapping[str, Any]) -> str:
    from lp_prune.pruning.registry import recorded_capabilities  # torch: only where a run's results are shown

    parts = [str(summary.get("model", "model"))]
    method = summary.get("method")
    if method:
        pattern = summary.get("pattern", "unstructured")
        target = summary.get("target_sparsity")
        amount = pattern if pattern != "unstructured" else (_percent(target, 0) if target is not None else "")
        parts.append(f"{method} {amount}".strip())
    if method and not recorded_capabilities(str(method), summary.get("method_capabilities")).calibrates:
        parts.append("no calibration data")
    elif summary.get("calibration_language"):
        size = f" ({summary['nsamples']} x {summary['seqlen']} tokens)" if "nsamples" in summary else ""
        parts.append(f"calibrated on {summary['calibration_language']}{size}")
    return "Results: " + ", ".join(parts)


def _perplexity_table(summary: Mapping[str, Any]) -> list[str]:
    perplexity = summary.get("perplexity") or {}
    dense, pruned = perplexity.get("dense") or {}, perplexity.get("pruned") or {}
    languages = _ordered({*dense, *pruned}, LANGUAGES)
    if not languages:
        return []
    rows = [("language", "dense ppl", "pruned ppl", "pruned/dense")]
    for lang in languages:
        before, after = _number(dense.get(lang)), _number(pruned.get(lang))
        ratio = after / before if before and math.isfinite(before) and math.isfinite(after) else math.nan
        rows.append((lang, _fixed(before), _fixed(after), _fixed(ratio, 3) + ("x" if math.isfinite(ratio) else "")))
    return _aligned(rows, right=(1, 2, 3))


def _downstream_table(downstream: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    dense, pruned = downstream.get("dense") or {}, downstream.get("pruned") or {}
    tasks = list(dict.fromkeys([*dense, *pruned]))
    if not tasks:
        return []
    order = {lang: i for i, lang in enumerate(LANGUAGES)}
    language = {task: (pruned.get(task) or dense.get(task) or {}).get("language") or "-" for task in tasks}
    tasks.sort(key=lambda task: (order.get(language[task], len(order)), task))
    rows = [("task", "language", "score", "dense", "pruned")]
    for task in tasks:
        metric = _score_name(pruned.get(task) or dense.get(task) or {})
        rows.append(
            (
                task,
                language[task],
                metric or "-",
                _fixed(_number((dense.get(task) or {}).get(metric)), 3),
                _fixed(_number((pruned.get(task) or {}).get(metric)), 3),
            )
        )
    return _aligned(rows, right=(3, 4))


def _score_name(result: Mapping[str, Any]) -> str | None:
    for name in _SCORE_PREFERENCE:
        if isinstance(result.get(name), int | float):
            return name
    scores = [k for k, v in result.items() if isinstance(v, int | float) and "stderr" not in k and k != "n"]
    return scores[0] if scores else None


# ---------------------------------------------------------------------------------------------------
# Sweeps and reports


def format_duration(seconds: float) -> str:
    """42s, 3m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def sweep_eta(durations: Sequence[float], remaining: int, parallel: int = 1) -> float | None:
    """Seconds until the sweep's remaining runs are done: their number times the mean duration of the
    finished runs, shared by `parallel` processes; None before any run finished."""
    if not durations:
        return None
    return remaining * (sum(durations) / len(durations)) / max(1, parallel)


def format_sweep_line(done: int, total: int, name: str, status: str, seconds: float, eta: float | None) -> str:
    """'[3/14] en-sparsegpt-1a2b3c4d  COMPLETE  2m10s  ETA 23m50s' for one finished run of a sweep."""
    tail = "" if done >= total else f"  ETA {format_duration(eta)}" if eta is not None else "  ETA ?"
    return f"[{done}/{total}] {name}  {status}  {format_duration(seconds)}{tail}"


def format_report_paths(title: str, paths: Mapping[str, Path | str], wandb_line: str | None = None) -> str:
    """Where a report's files are, one per line, then the W&B line."""
    width = max(len(label) for label in paths) if paths else 0
    lines = [f"{title}:", *(f"  {label.ljust(width)}  {path}" for label, path in paths.items())]
    if wandb_line:
        lines.append(wandb_line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Helpers


def _ordered(keys: set[str], preferred: Sequence[str]) -> list[str]:
    return [k for k in preferred if k in keys] + sorted(keys - set(preferred))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _fixed(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def _percent(value: Any, digits: int = 2) -> str:
    return f"{100 * float(value):.{digits}f}%"


def _aligned(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = (
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        lines.append(("  " + "  ".join(cells)).rstrip())
    return lines
