"""Typed run configuration, validated before any heavy work.

- schema, data_schema: the dataclasses (RunConfig and its sections) and their checks;
- recipe: the calibration-mix grammar of data.calibration_language and CalibrationRecipe;
- tasks: the downstream task rules (eval.tasks shorthands, the study's task per language);
- values: checks and parsers of single values (seeds, N:M patterns, sizes);
- io: the jsonargparse parser and read_run_config for a saved run's config.yaml;
- method_keys: the pruning method's settings as flat keys beside prune.method;
- hub: the packaged configs/ and sweeps/ files, found by those paths from any folder.

Everything is importable from lp_prune.config itself.
"""

from lp_prune.config.data_schema import DATA_SOURCES, REFERENCE_SETS, DataConfig, DataSource, GenerationConfig
from lp_prune.config.io import add_run_config_arguments, read_run_config, run_config_from, run_config_parser
from lp_prune.config.recipe import (
    MIX_SUM_TOLERANCE,
    CalibrationRecipe,
    calibration_mix,
    label_languages,
    proportional_counts,
)
from lp_prune.config.schema import (
    ACTIVATION_PLACES,
    DTYPES,
    PACKAGED_MODEL,
    WANDB_MODES,
    Accelerator,
    ActivationPlace,
    Dtype,
    EvalConfig,
    LocalErrorMode,
    ModelConfig,
    PruneConfig,
    RunConfig,
    StatisticsRule,
    Strategy,
    WandbConfig,
    WandbMode,
)
from lp_prune.config.tasks import STUDY_TASKS, TASK_SHORTHANDS, check_task_name, split_list
from lp_prune.config.values import SEED_LIMIT, check_seed, parse_pattern, size_in_bytes
from lp_prune.errors import ConfigError, DataError
from lp_prune.languages import LANGUAGES, check_language_code

__all__ = [
    "ACTIVATION_PLACES",
    "DATA_SOURCES",
    "DTYPES",
    "LANGUAGES",
    "MIX_SUM_TOLERANCE",
    "PACKAGED_MODEL",
    "REFERENCE_SETS",
    "SEED_LIMIT",
    "STUDY_TASKS",
    "TASK_SHORTHANDS",
    "WANDB_MODES",
    "Accelerator",
    "ActivationPlace",
    "CalibrationRecipe",
    "ConfigError",
    "DataConfig",
    "DataError",
    "DataSource",
    "Dtype",
    "EvalConfig",
    "GenerationConfig",
    "LocalErrorMode",
    "ModelConfig",
    "PruneConfig",
    "RunConfig",
    "StatisticsRule",
    "Strategy",
    "WandbConfig",
    "WandbMode",
    "add_run_config_arguments",
    "calibration_mix",
    "check_language_code",
    "check_seed",
    "check_task_name",
    "label_languages",
    "parse_pattern",
    "proportional_counts",
    "read_run_config",
    "run_config_from",
    "run_config_parser",
    "size_in_bytes",
    "split_list",
]
