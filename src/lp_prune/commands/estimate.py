"""`lp-prune estimate`: the memory a run would need per process, without loading any weights.

    lp-prune estimate --config configs/default.yaml
    lp-prune estimate --config configs/models/llama3-8b.yaml --shape configs/models/shapes/llama3-8b.json

--shape plans with a saved config.json instead of the model's own config (no download needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from jsonargparse import ArgumentParser, Namespace

from lp_prune.cli_support import ConfigFile
from lp_prune.commands import COMMANDS
from lp_prune.commands.run import PRECISION_HELP, run_config_of
from lp_prune.config import add_run_config_arguments
from lp_prune.config.hub import resolve
from lp_prune.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

HELP = COMMANDS["estimate"]


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("-c", "--config", action=ConfigFile, help="YAML file with any of the run's keys")
    shape_help = "a config.json to plan with (no download); configs/models/shapes/ holds the study's models"
    parser.add_argument("--shape", type=str | None, default=None, help=shape_help)
    parser.add_argument("--precision", type=str | None, default=None, help=PRECISION_HELP)
    add_run_config_arguments(parser)


def execute(namespace: Namespace) -> int:
    from lp_prune.memory import ModelShape, available_bytes, device_kind, estimate_memory, gib
    from lp_prune.models.loading import load_tokenizer_and_config

    config = run_config_of(namespace)
    config.validate()
    if namespace.shape is not None:
        model_config = shape_config(namespace.shape)
    else:
        model_config = load_tokenizer_and_config(config.model)[1]
    kind = device_kind(config.accelerator)
    estimate = estimate_memory(config, ModelShape.from_config(model_config), kind)
    print(estimate.table(config.world_size))
    free = available_bytes(kind)
    if free is not None:
        print(f"  free here ({kind}):{gib(free):>26}")
    return 0


def shape_config(given: str) -> PretrainedConfig:
    """The config.json of --shape, checked as a model folder's is (sizes present and positive), of an
    architecture transformers ships (a config naming its own code, auto_map, is refused: nothing of it
    is imported) that lp_prune prunes: a decoder-only causal LM of Linear layers."""
    from transformers import AutoConfig

    from lp_prune.config import ModelConfig
    from lp_prune.memory import MAX_BUILT_LAYERS, with_layers
    from lp_prune.models.config_check import read_config_json
    from lp_prune.models.loading import check_prunable_causal_lm

    what = f"--shape {given}"
    path = Path(resolve(given))
    values = read_config_json(path / "config.json" if path.is_dir() else path, what)
    if values.get("auto_map"):
        raise ModelLoadError(
            f"{what}: the config names modelling code of its own (auto_map); estimate plans with the "
            "architectures transformers ships and never imports a model's code"
        )
    try:
        model_config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError, TypeError) as err:
        raise ModelLoadError(f"{what}: not a readable model config.json ({err})") from None
    layers = model_config.get_text_config().num_hidden_layers
    check_prunable_causal_lm(ModelConfig(name=given), with_layers(model_config, min(layers, MAX_BUILT_LAYERS)))
    return model_config
