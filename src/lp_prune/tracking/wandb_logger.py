"""W&B through Lightning's WandbLogger: offline unless an API key is there, per-layer axis, tables.

The mode is set with the WANDB_MODE environment variable (WandbLogger(offline=True) would flip it
for the whole process behind the caller's back anyway).
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger

from lp_prune.config import WandbConfig


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def resolve_mode(config: WandbConfig) -> str:
    """auto -> WANDB_MODE if the user set it, else online with credentials and offline without."""
    if config.mode != "auto":
        return config.mode
    return os.environ.get("WANDB_MODE") or ("online" if has_wandb_credentials() else "offline")


def make_wandb_logger(config: WandbConfig, save_dir: Path, run_config: Mapping[str, Any]) -> WandbLogger | None:
    mode = resolve_mode(config)
    if mode == "disabled":
        return None
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_SILENT", "true")
    logger = WandbLogger(
        project=config.project,
        name=config.name,
        group=config.group,
        tags=list(config.tags) or None,
        save_dir=str(save_dir),
        config=dict(run_config),
    )
    # Calibration runs inside trainer.validate, where global_step stays 0: layers are the x-axis.
    logger.experiment.define_metric("layer")
    logger.experiment.define_metric("prune/*", step_metric="layer")
    return logger


def log_table(loggers: Sequence[Logger], key: str, columns: list[str], rows: list[list[Any]]) -> None:
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=columns, data=rows)


def update_summary(loggers: Sequence[Logger], values: Mapping[str, Any]) -> None:
    """Final numbers (perplexity per language, overall sparsity) into the run summary."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(dict(values))
        else:
            logger.log_metrics({k: v for k, v in values.items() if isinstance(v, int | float)})


def log_masks_artifact(loggers: Sequence[Logger], masks_path: Path, name: str) -> None:
    """The bit-packed masks as a W&B artifact, so cross-run analysis can fetch them later."""
    import wandb

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            artifact = wandb.Artifact(name=name, type="pruning-masks")
            artifact.add_file(str(masks_path))
            logger.experiment.log_artifact(artifact)


def finish(loggers: Sequence[Logger], status: str = "success") -> None:
    for logger in loggers:
        logger.finalize(status)
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=0 if status == "success" else 1)


def log_analysis_run(
    project: str,
    group: str | None,
    name: str,
    tables: Mapping[str, tuple[list[str], list[list[Any]]]],
    images: Mapping[str, Path],
    save_dir: Path,
) -> None:
    """A W&B run of job type 'analysis' holding comparison tables and figures beside the runs."""
    import wandb

    os.environ["WANDB_MODE"] = resolve_mode(WandbConfig(project=project))
    run = wandb.init(project=project, group=group, name=name, job_type="analysis", dir=str(save_dir))
    try:
        for key, (columns, rows) in tables.items():
            run.log({key: wandb.Table(columns=columns, data=rows)})
        run.log({key: wandb.Image(str(path)) for key, path in images.items()})
    finally:
        run.finish()
