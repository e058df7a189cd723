"""Typed run configuration: one dataclass per concern, validated before any heavy work.

The CLI builds a `RunConfig` from a YAML file in `configs/` plus dotted command-line overrides
(`--prune.method wanda --data.calibration_language sw`), the LightningCLI way (jsonargparse).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from lp_prune.errors import ConfigError

LANGUAGES: tuple[str, ...] = ("ar", "de", "en", "es", "ru", "sw", "zh")
METHODS: tuple[str, ...] = ("sparsegpt", "wanda", "magnitude")
DATA_SOURCES: tuple[str, ...] = ("packaged", "mc4", "files", "tokens")
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")

PACKAGED_MODEL = "gemma3-270m"


@dataclass
class ModelConfig:
    """Which model to prune: the packaged default, a hub id, or a local folder."""

    name: str = PACKAGED_MODEL
    dtype: str = "float32"
    revision: str | None = None
    trust_remote_code: bool = False

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype '{self.dtype}' is not one of: {', '.join(DTYPES)}")


@dataclass
class DataConfig:
    """Calibration and evaluation text.

    source: packaged (dataset-build text, offline), mc4 (allenai/c4 streaming, needs network),
    files (local UTF-8 text, `files: {lang: path}`), tokens (a [n, seqlen] .pt/.npy file of token ids
    used as the calibration windows as they are).
    """

    source: str = "packaged"
    calibration_language: str = "en"
    eval_languages: list[str] = field(default_factory=lambda: list(LANGUAGES))
    nsamples: int = 32
    seqlen: int = 256
    eval_windows: int = 8
    eval_seqlen: int = 256
    eval_fraction: float = 0.2
    batch_size: int = 8  # calibration windows per forward pass
    eval_batch_size: int = 1  # evaluation windows per forward: logits are seqlen x vocab floats each
    files: dict[str, str] = field(default_factory=dict)
    token_file: str | None = None
    seed: int = 0

    def validate(self) -> None:
        check_language(self.calibration_language, "data.calibration_language")
        for lang in self.eval_languages:
            check_language(lang, "data.eval_languages")
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"data.source '{self.source}' is not one of: {', '.join(DATA_SOURCES)}")
        for key in ("nsamples", "seqlen", "eval_seqlen", "batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be at least 1, got {getattr(self, key)}")
        if self.eval_windows < 0:
            raise ConfigError(f"data.eval_windows must be 0 or more, got {self.eval_windows}")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError(f"data.eval_fraction must lie in (0, 1), got {self.eval_fraction}")
        if self.source == "tokens" and not self.token_file:
            raise ConfigError("data.source 'tokens' needs data.token_file (a [n, seqlen] .pt or .npy file)")
        if self.source == "files" and self.calibration_language not in self.files:
            raise ConfigError(
                f"data.source 'files' needs data.files.{self.calibration_language}: a text file per language"
            )


@dataclass
class PruneConfig:
    """How to prune: method, target sparsity or N:M pattern, solver settings."""

    method: str = "sparsegpt"
    sparsity: float = 0.5
    pattern: str = "unstructured"  # or "N:M", e.g. "2:4" (sparsity is then N/M)
    blocksize: int = 128
    percdamp: float = 0.01
    true_sequential: bool = False

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"prune.method '{self.method}' is not one of: {', '.join(METHODS)}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"prune.sparsity must lie in [0, 1), got {self.sparsity}")
        parse_pattern(self.pattern)
        if self.blocksize < 1:
            raise ConfigError(f"prune.blocksize must be at least 1, got {self.blocksize}")
        if not 0.0 < self.percdamp < 10.0:
            raise ConfigError(f"prune.percdamp must lie in (0, 10), got {self.percdamp}")

    @property
    def n_m(self) -> tuple[int, int] | None:
        return parse_pattern(self.pattern)

    @property
    def target_sparsity(self) -> float:
        nm = self.n_m
        return nm[0] / nm[1] if nm else self.sparsity


@dataclass
class EvalConfig:
    """What to measure after pruning.

    tasks: downstream tasks run through lm-eval on the dense (with dense_baseline) and the pruned
    model: lm-eval task names, or shorthands expanded over data.eval_languages (TASK_SHORTHANDS:
    proxy = the offline proxy tasks, belebele / arc / hellaswag / mmlu / mkqa = the study's tasks,
    study = all five). Empty: no downstream evaluation. See lp_prune.evaluation.downstream.
    """

    perplexity: bool = True
    dense_baseline: bool = True  # also evaluate the unpruned model
    cache_dense: bool = True  # reuse the dense results of an identical model + windows (sweeps)
    tasks: list[str] = field(default_factory=list)
    limit: int | None = None  # at most this many items per task (quick runs); None = all
    num_fewshot: int = 0  # zero-shot as in the study
    batch_size: int = 8  # lm-eval requests per forward pass

    def validate(self) -> None:
        for name in self.tasks:
            check_task_name(name)
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"eval.limit must be at least 1 (or null for all items), got {self.limit}")
        if self.num_fewshot < 0:
            raise ConfigError(f"eval.num_fewshot must be 0 or more, got {self.num_fewshot}")
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be at least 1, got {self.batch_size}")


@dataclass
class WandbConfig:
    """W&B tracking. mode: auto (online with an API key, else offline), online, offline, disabled."""

    project: str = "lp_prune"
    mode: str = "auto"
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    name: str | None = None

    def validate(self) -> None:
        if self.mode not in ("auto", "online", "offline", "disabled"):
            raise ConfigError(f"wandb.mode '{self.mode}' is not one of: auto, online, offline, disabled")


@dataclass
class RunConfig:
    """One pruning run: model x data x method, then evaluation, tracking and a run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    out: str | None = None  # run directory; default runs/<model>-<method>-<lang>-<time>
    save_model: bool = False
    overwrite: bool = False  # replace a complete run in `out`
    checkpoint: bool = True  # save each pruned layer so `--resume` can continue after a crash
    accelerator: str = "auto"
    seed: int = 0

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.prune.validate()
        self.eval.validate()
        self.wandb.validate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_language(lang: str, key: str) -> None:
    if lang not in LANGUAGES:
        raise ConfigError(f"{key}: unknown language '{lang}'; valid languages: {', '.join(LANGUAGES)}")


# Downstream task shorthands (lp_prune.evaluation.downstream expands them per language).
TASK_SHORTHANDS: tuple[str, ...] = ("proxy", "belebele", "arc", "hellaswag", "mmlu", "mkqa", "study")
_TASK_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*$")
_NAMED_PER_LANGUAGE = ("lp_prune_proxy_", "mkqa_")  # lp_prune's own tasks: <prefix><language>


def check_task_name(name: str) -> None:
    """Cheap checks only; whether lm-eval knows the name is checked before any weights load."""
    if not isinstance(name, str) or not _TASK_NAME.match(name):
        raise ConfigError(f"eval.tasks: '{name}' is not a task name or shorthand ({', '.join(TASK_SHORTHANDS)})")
    for prefix in _NAMED_PER_LANGUAGE:
        lang = name.removeprefix(prefix)
        if name.startswith(prefix) and lang not in LANGUAGES:
            raise ConfigError(f"eval.tasks: unknown language '{lang}' in '{name}'; valid: {', '.join(LANGUAGES)}")
    if name == "mkqa_sw":
        raise ConfigError("eval.tasks: MKQA has no Swahili, so there is no mkqa_sw")


_PATTERN = re.compile(r"^(\d+):(\d+)$")


def parse_pattern(pattern: str) -> tuple[int, int] | None:
    """'unstructured' -> None; 'N:M' -> (N, M) with 0 < N < M (N of every M consecutive weights pruned)."""
    if pattern == "unstructured":
        return None
    match = _PATTERN.match(pattern.strip())
    if not match:
        raise ConfigError(f"prune.pattern '{pattern}' is neither 'unstructured' nor N:M such as '2:4'")
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise ConfigError(f"prune.pattern '{pattern}': N:M needs 0 < N < M (N pruned of every M weights)")
    return n, m
