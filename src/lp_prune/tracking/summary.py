"""summary.json: the machine-readable record of a run, and its headline numbers for W&B."""

from __future__ import annotations

import resource
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lp_prune.config import RunConfig
from lp_prune.tracking import wandb_logger as tracking


def build_summary(
    config: RunConfig,
    records: list[Any],
    perplexity: dict[str, dict[str, dict[str, float]]],
    timings: dict[str, float],
    calibration_tokens: int,
) -> dict[str, Any]:
    """The machine-readable record of a run (summary.json)."""
    modules = [asdict(r) for r in records]
    total = sum(r.numel for r in records)
    pruned_zeros = sum(r.sparsity * r.numel for r in records)
    dense_zeros = sum(r.dense_zeros * r.numel for r in records)
    return {
        "model": config.model.name,
        "method": config.prune.method,
        "pattern": config.prune.pattern,
        "target_sparsity": config.prune.target_sparsity,
        "calibration_language": config.data.calibration_language,
        "calibration_mix": config.data.calibration_counts(),
        "statistics": config.prune.statistics,  # how the calibration languages combine (pooled, balanced, ...)
        "nsamples": config.data.calibration_samples,
        "seqlen": config.data.seqlen,
        "calibration_tokens": calibration_tokens,
        "seed": config.seed,
        "sparsity": pruned_zeros / total if total else 0.0,
        "dense_zeros": dense_zeros / total if total else 0.0,
        "perplexity": {stage: {lang: v["perplexity"] for lang, v in res.items()} for stage, res in perplexity.items()},
        "bits_per_byte": {
            stage: {lang: v["bits_per_byte"] for lang, v in res.items()} for stage, res in perplexity.items()
        },
        "eval_tokens": {lang: v["tokens"] for lang, v in next(iter(perplexity.values()), {}).items()},
        "modules": modules,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": library_versions(),
    }


def library_versions() -> dict[str, str]:
    """What produced the numbers: recorded in every summary."""
    import platform

    import transformers

    from lp_prune import __version__

    return {
        "lp_prune": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "transformers": transformers.__version__,
    }


def log_results(loggers: list, summary: dict[str, Any], masks_file: Path) -> None:
    """The summary's headline numbers, the per-module table and the masks artifact, to W&B."""
    if not loggers:
        return
    flat: dict[str, Any] = {"sparsity": summary["sparsity"], "dense_zeros": summary["dense_zeros"]}
    for stage, values in summary["perplexity"].items():
        flat.update({f"ppl/{stage}/{lang}": v for lang, v in values.items()})
    for stage, values in summary["bits_per_byte"].items():
        flat.update({f"bpb/{stage}/{lang}": v for lang, v in values.items()})
    flat.update({f"time/{k}": v for k, v in summary["timings_s"].items()})
    tracking.update_summary(loggers, flat)
    columns = ["layer", "module", "sparsity", "dense_zeros", "error", "rel_error", "snr_db"]
    tracking.log_table(loggers, "modules", columns, [[m[c] for c in columns] for m in summary["modules"]])
    tracking.log_masks_artifact(loggers, masks_file, name=tracking.artifact_name("masks", masks_file.parent.name))
