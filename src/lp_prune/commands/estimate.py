"""`lp-prune estimate`: the memory a run would need per process, without loading any weights.

    lp-prune estimate --config configs/default.yaml
    lp-prune estimate --config configs/models/llama3-8b.yaml --shape configs/models/shapes/llama3-8b.json

--shape plans with a saved config.json instead of the model's own config (no download needed).
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from lp_prune.cli_support import ConfigFile
from lp_prune.config import RunConfig, run_config_from
from lp_prune.config.hub import resolve
from lp_prune.errors import ModelLoadError

HELP = "Estimate a run's memory per process from the model's config (no weights load)."


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--config", action=ConfigFile, help="YAML file with any of the run's keys")
    shape_help = "a config.json to plan with (no download); configs/models/shapes/ holds the study's models"
    parser.add_argument("--shape", type=str | None, default=None, help=shape_help)
    parser.add_class_arguments(RunConfig)


def execute(namespace: Namespace) -> int:
    from transformers import AutoConfig

    from lp_prune.memory import ModelShape, available_bytes, device_kind, estimate_memory, gib
    from lp_prune.models.loading import load_tokenizer_and_config

    config = run_config_from(namespace)
    config.validate()
    if namespace.shape:
        try:
            model_config = AutoConfig.from_pretrained(resolve(namespace.shape))
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"--shape {namespace.shape}: not a readable model config.json ({err})") from None
    else:
        model_config = load_tokenizer_and_config(config.model)[1]
    kind = device_kind(config.accelerator)
    estimate = estimate_memory(config, ModelShape.from_config(model_config), kind)
    print(estimate.table(config.world_size))
    free = available_bytes(kind)
    if free is not None:
        print(f"  free here ({kind}):{gib(free):>26}")
    return 0
