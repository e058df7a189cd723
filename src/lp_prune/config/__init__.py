"""Typed run configuration, validated before any heavy work.

- schema, data_schema: the dataclasses (RunConfig and its sections) and their checks;
- recipe: the calibration-mix grammar of data.calibration_language and CalibrationRecipe;
- tasks: the downstream task rules (eval.tasks shorthands, the study's task per language);
- values: checks and parsers of single values (seeds, N:M patterns, sizes);
- targets: prune.targets and prune.ignore, the module patterns that pick the pruned Linears;
- prune_schema: the prune.* part of the schema (the method object and the shared keys);
- io: the jsonargparse parser and read_run_config for a saved run's config.yaml;
- method_keys: the pruning method's settings as flat keys beside prune.method;
- hub: the packaged configs/ and sweeps/ files, found by those paths from any folder.

Everything is importable from lp_prune.config itself. Names load on first use: the command line reads
config.hub and config.code_options without the schema (which loads torch through lp_prune.pruning).
"""

from __future__ import annotations

from lp_prune.lazy import lazy_exports

_EXPORTS: dict[str, tuple[str, ...]] = {
    "lp_prune.config.data_schema": ("DATA_SOURCES", "REFERENCE_SETS", "DataConfig", "DataSource", "GenerationConfig"),
    "lp_prune.config.io": ("add_run_config_arguments", "read_run_config", "run_config_from", "run_config_parser"),
    "lp_prune.config.recipe": (
        "MIX_SUM_TOLERANCE",
        "CalibrationRecipe",
        "calibration_mix",
        "label_languages",
        "proportional_counts",
    ),
    "lp_prune.config.schema": (
        "ACTIVATION_PLACES",
        "DTYPES",
        "PACKAGED_MODEL",
        "WANDB_MODES",
        "Accelerator",
        "ActivationPlace",
        "Dtype",
        "EvalConfig",
        "ModelConfig",
        "RunConfig",
        "Strategy",
        "WandbConfig",
        "WandbMode",
    ),
    "lp_prune.config.targets": ("LinearTargets", "check_patterns"),
    "lp_prune.config.prune_schema": ("LocalErrorMode", "PruneConfig", "StatisticsRule"),
    "lp_prune.config.tasks": ("STUDY_TASKS", "TASK_SHORTHANDS", "check_task_name", "split_list"),
    "lp_prune.config.values": ("SEED_LIMIT", "check_seed", "parse_pattern", "size_in_bytes"),
    "lp_prune.errors": ("ConfigError", "DataError"),
    "lp_prune.languages": ("LANGUAGES", "check_language_code"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


__getattr__, __dir__ = lazy_exports("lp_prune.config", globals(), _MODULE_OF)
