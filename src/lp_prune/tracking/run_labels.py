"""What a pruning run is called in W&B, read from its recipe, unless wandb.name / group say otherwise.

    display name   method, sparsity (or N:M pattern; quantization: its grid), calibration recipe, draw:
                   'wanda-0.5-en-d0', 'sparsegpt-2:4-sw-d3', 'gptq-4bit-g128-en+sw-d0',
                   'sparsegpt_gptq-0.5-4bit-g16-en64+sw64-d0-seed1', 'rtn-4bit-g-row', 'magnitude-0.5'
                   (methods that read no calibration data name none, and no draw)
    group          the setting: the model and the display name without calibration and draw
                   ('gemma3-270m-wanda-0.5'), so that the languages and draws of one setting sit
                   together; a local sweep groups its runs under the sweep's name instead
    tags           the setting, the method and 'cal:<recipe>', after the run's own wandb.tags (a local
                   sweep adds its name)

The draw is data.seed (which calibration windows); the run's seed shows as '-seed<k>' when it is not 0.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lp_prune.config import RunConfig, WandbConfig

MAX_TAG = 64  # W&B refuses longer tags


def method_part(config: RunConfig) -> str:
    """'wanda-0.5', 'sparsegpt-2:4', 'wanda_sp-structured-0.2', 'gptq-4bit-g128', 'sparsegpt_gptq-0.5-4bit-g16'."""
    prune, method = config.prune, config.prune.method.capabilities()
    parts = [prune.method.name]
    if method.zeroes:
        if method.structured:
            parts += ["structured", f"{prune.target_sparsity:g}"]
        else:
            parts.append(prune.pattern if prune.pattern != "unstructured" else f"{prune.target_sparsity:g}")
    if method.quantizes:
        settings = prune.method.settings()
        group = settings.get("group_size")
        group = "-row" if group in (None, -1) else group
        parts.append(f"{settings.get('bits')}bit-g{group}" + ("-sym" if settings.get("symmetric") else ""))
    return "-".join(parts)


def calibration_part(config: RunConfig) -> str | None:
    """'en', 'en+sw', 'all', 'en64+sw64' (a mix's counts), with the text source when it is not the
    packaged text and the statistics rule when it is not pooled; None when the method reads no
    calibration data."""
    if not config.prune.method.capabilities().calibrates:
        return None
    spec = config.data.calibration_language.strip()
    if ":" in spec:
        spec = "+".join(f"{lang}{count}" for lang, count in config.data.calibration_counts().items())
    parts = [spec]
    parts += [config.data.source] if config.data.source != "packaged" else []
    parts += [config.prune.statistics] if config.prune.statistics != "pooled" else []
    return "-".join(parts)


def display_name(config: RunConfig) -> str:
    """The run's W&B display name (see the module's doc)."""
    parts = [method_part(config)]
    calibration = calibration_part(config)
    if calibration is not None:
        parts += [calibration, f"d{config.data.seed}"]
    if config.seed != 0:
        parts.append(f"seed{config.seed}")
    return "-".join(parts)


def setting_name(config: RunConfig) -> str:
    """The run's setting: the model's folder or hub name, then `method_part`."""
    model = Path(config.model.name.rstrip("/")).name or config.model.name
    return f"{model}-{method_part(config)}"


def run_tags(config: RunConfig) -> list[str]:
    """The run's own wandb.tags, then its setting, method and calibration recipe (each cut to W&B's
    64 characters), without repeats."""
    tags = [*config.wandb.tags, setting_name(config), config.prune.method.name]
    calibration = calibration_part(config)
    if calibration is not None:
        tags.append(f"cal:{calibration}")
    return list(dict.fromkeys(tag[:MAX_TAG] for tag in tags))


def labelled(config: RunConfig) -> WandbConfig:
    """The run's W&B settings with its name, group and tags filled in from its recipe where not given."""
    wandb = config.wandb
    return replace(
        wandb,
        name=wandb.name or display_name(config),
        group=wandb.group or setting_name(config),
        tags=run_tags(config),
    )
