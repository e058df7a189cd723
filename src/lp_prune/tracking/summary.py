"""summary.json: the machine-readable record of a run, and its headline numbers for W&B."""

from __future__ import annotations

import math
import resource
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lp_prune.config import RunConfig
from lp_prune.errors import UserError
from lp_prune.pruning.method import Capabilities
from lp_prune.pruning.registry import choice_of, recorded_capabilities
from lp_prune.storage.files import check_record_fields, read_json
from lp_prune.tracking import wandb_logger


@dataclass(kw_only=True)
class RunSummary:
    """summary.json: one run's record, written by the pipeline, read by compare, analyze and eval, and
    rebuilt from W&B for runs whose folder is elsewhere. Field order is the file's key order."""

    model: str
    method: str
    # The method's spec ({"name": ..., "settings": {...}}) and its capabilities (Capabilities.to_json), as
    # the run had them; absent from summaries written before they were recorded.
    method_spec: dict[str, Any] | None = None
    method_capabilities: dict[str, Any] | None = None
    pattern: str
    target_sparsity: float
    calibration_language: str
    calibration_mix: dict[str, int] = field(default_factory=dict)  # windows per calibration language
    statistics: str = "pooled"  # how the calibration languages combine (pooled, balanced, weighted)
    nsamples: int
    seqlen: int
    calibration_tokens: int = 0
    seed: int | None = None
    sparsity: float | None = None  # of the prunable weights, measured after pruning
    dense_zeros: float | None = None  # zeros before pruning
    perplexity: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> language -> value
    bits_per_byte: dict[str, dict[str, float]] = field(default_factory=dict)
    eval_tokens: dict[str, int] = field(default_factory=dict)
    modules: list[dict[str, Any]]  # one ModuleRecord per pruned Linear
    timings_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    versions: dict[str, str] = field(default_factory=dict)
    resumed_from_layer: int = 0
    world_size: int = 1
    owl: dict[str, Any] | None = None  # OWL's layer sparsities, when it set them
    downstream: dict[str, dict[str, dict[str, Any]]] | None = None  # stage -> task -> metrics
    wandb_url: str | None = None
    rebuilt_from_wandb: bool = False

    def capabilities(self) -> Capabilities:
        """What the run's method declared, as recorded; for an older summary, what the method registered
        under its name here declares."""
        return recorded_capabilities(str(self.method), self.method_capabilities)

    def method_settings(self) -> dict[str, Any] | None:
        """The method's settings as recorded (None for an older summary)."""
        settings = self.method_spec.get("settings") if isinstance(self.method_spec, dict) else None
        return dict(settings) if isinstance(settings, dict) else None

    def to_json(self) -> dict[str, Any]:
        """The file's object: optional parts that did not happen are left out."""
        record = asdict(self)
        for key in ("method_spec", "method_capabilities", "owl", "downstream"):
            if record[key] is None:
                del record[key]
        if not self.rebuilt_from_wandb:
            del record["rebuilt_from_wandb"]
        return record

    @classmethod
    def from_json(cls, record: Any, path: Path | str) -> RunSummary:
        """Check a summary.json object; a UserError naming `path` when it is not one lp_prune wrote."""
        record = check_record_fields(cls, record, path, "a run summary", "the run is damaged")
        if not isinstance(record["modules"], list):
            raise UserError(f"{path}: 'modules' is not a list of pruned modules; the run is damaged")
        return cls(**record)


def read_summary(path: Path) -> RunSummary:
    """A run's summary.json, or a UserError naming the file when it is not one lp_prune wrote."""
    return RunSummary.from_json(read_json(path), path)


def build_summary(
    config: RunConfig,
    records: list[Any],
    perplexity: dict[str, dict[str, dict[str, float]]],
    timings: dict[str, float],
    calibration_tokens: int,
    **outcome: Any,
) -> RunSummary:
    """The machine-readable record of a run (summary.json); `outcome`: the remaining RunSummary fields."""
    modules = [asdict(r) for r in records]
    total = sum(r.numel for r in records)
    pruned_zeros = sum(r.sparsity * r.numel for r in records)
    dense_zeros = sum(r.dense_zeros * r.numel for r in records)
    method = config.prune.method
    return RunSummary(
        model=config.model.name,
        method=method.name,
        method_spec={"name": choice_of(method), "settings": method.settings()},
        method_capabilities=method.capabilities().to_json(),
        pattern=config.prune.pattern,
        target_sparsity=config.prune.target_sparsity,
        calibration_language=config.data.calibration_language,
        calibration_mix=config.data.calibration_counts(),
        statistics=config.prune.statistics,
        nsamples=config.data.calibration_samples,
        seqlen=config.data.seqlen,
        calibration_tokens=calibration_tokens,
        seed=config.seed,
        sparsity=pruned_zeros / total if total else 0.0,
        dense_zeros=dense_zeros / total if total else 0.0,
        perplexity={stage: {lang: v["perplexity"] for lang, v in res.items()} for stage, res in perplexity.items()},
        bits_per_byte={
            stage: {lang: v["bits_per_byte"] for lang, v in res.items()} for stage, res in perplexity.items()
        },
        eval_tokens={lang: v["tokens"] for lang, v in next(iter(perplexity.values()), {}).items()},
        modules=modules,
        timings_s={k: round(v, 3) for k, v in timings.items()},
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        versions=library_versions(),
        **outcome,
    )


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


def headline_numbers(summary: RunSummary) -> dict[str, Any]:
    """The run's numbers under their W&B summary names (sparsity, ppl/<stage>/<lang>, bpb/..., time/...,
    and the comparison axes of `comparison_numbers`): what log_results sends and what a sweep's
    `metric: {name: ...}` names."""
    flat: dict[str, Any] = {"sparsity": summary.sparsity, "dense_zeros": summary.dense_zeros}
    for stage, values in summary.perplexity.items():
        flat.update({f"ppl/{stage}/{lang}": v for lang, v in values.items()})
    for stage, values in summary.bits_per_byte.items():
        flat.update({f"bpb/{stage}/{lang}": v for lang, v in values.items()})
    flat.update({f"time/{k}": v for k, v in summary.timings_s.items()})
    flat.update(comparison_numbers(summary))
    return flat


def comparison_numbers(summary: RunSummary) -> dict[str, float]:
    """One value per run for the runs table and parallel coordinates, whatever the languages:

    perplexity/own          pruned perplexity in the calibration language (a mix: geometric mean over
                            its languages; none for a method that reads no calibration data)
    perplexity/own_ratio    the same, pruned / dense
    perplexity/geo_mean     geometric mean of the pruned perplexity over the evaluated languages
    perplexity/geo_mean_ratio  the same, pruned / dense, over the languages both stages measured
    accuracy/mean           mean downstream accuracy (`acc`) of the pruned model over its tasks
    accuracy/mean_dense     the same for the dense model

    A perplexity that diverged (infinite or NaN) makes its mean infinite: the worst value, not a gap."""
    pruned, dense = summary.perplexity.get("pruned", {}), summary.perplexity.get("dense", {})
    numbers: dict[str, float] = {}
    own = [lang for lang in summary.calibration_mix or {summary.calibration_language: 0} if lang in pruned]
    if own and summary.capabilities().calibrates:
        numbers["perplexity/own"] = geometric_mean(pruned[lang] for lang in own)
        if all(lang in dense for lang in own):
            numbers["perplexity/own_ratio"] = numbers["perplexity/own"] / geometric_mean(dense[lang] for lang in own)
    if pruned:
        numbers["perplexity/geo_mean"] = geometric_mean(pruned.values())
        both = [lang for lang in pruned if lang in dense]
        if both:
            ratio = geometric_mean(pruned[lang] for lang in both) / geometric_mean(dense[lang] for lang in both)
            numbers["perplexity/geo_mean_ratio"] = ratio
    for stage, key in (("pruned", "accuracy/mean"), ("dense", "accuracy/mean_dense")):
        scores = [r["acc"] for r in (summary.downstream or {}).get(stage, {}).values() if _is_number(r.get("acc"))]
        if scores:
            numbers[key] = statistics.fmean(scores)
    return numbers


def geometric_mean(values: Iterable[float | None]) -> float:
    """exp(mean log value); infinite when any value is missing, not finite or not positive (diverged)."""
    values = list(values)
    if not all(_is_number(v) and math.isfinite(v) and v > 0 for v in values):
        return math.inf
    return math.exp(statistics.fmean(math.log(v) for v in values))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def log_results(loggers: list, summary: RunSummary, masks_file: Path) -> None:
    """The summary's headline numbers, the per-module table and the masks artifact, to W&B."""
    if not loggers:
        return
    wandb_logger.update_summary(loggers, headline_numbers(summary))
    columns = ["layer", "module", "sparsity", "dense_zeros", "error", "rel_error", "snr_db"]
    wandb_logger.log_table(loggers, "modules", columns, [[m[c] for c in columns] for m in summary.modules])
    wandb_logger.log_masks_artifact(
        loggers, masks_file, name=wandb_logger.artifact_name("masks", masks_file.parent.name)
    )
