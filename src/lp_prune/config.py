"""Typed run configuration: one dataclass per concern, validated before any heavy work.

The CLI builds a `RunConfig` from a YAML file in `configs/` plus dotted command-line overrides
(`--prune.method wanda --data.calibration_language sw`), the LightningCLI way (jsonargparse).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from lp_prune.errors import ConfigError

LANGUAGES: tuple[str, ...] = ("ar", "de", "en", "es", "ru", "sw", "zh")
METHODS: tuple[str, ...] = ("sparsegpt", "wanda", "magnitude")
DATA_SOURCES: tuple[str, ...] = ("packaged", "mc4", "files", "tokens", "generated")
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
ACTIVATION_PLACES: tuple[str, ...] = ("device", "cpu", "disk")

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
class GenerationConfig:
    """data.source generated: the model being pruned writes its own calibration text (lp_prune.data.generated).

    It continues short seed prompts in the calibration language by sampling (temperature, then the
    top_k most likely tokens, then nucleus top_p: Gemma's own recipe), seeded by data.seed; windows
    in another language (a script / stopword check, approximate) or with an extreme perplexity
    (outside Tukey's fences on log perplexity, or above max_perplexity) are dropped, and more are
    generated, up to `tries` x the windows needed.
    """

    temperature: float = 0.8
    top_k: int = 64  # 0: no top-k cut (then top_p sorts the whole vocabulary at every step: slow for 262k)
    top_p: float = 0.95
    batch_size: int = 32  # sequences per generate call (KV cache on); each step reads the whole lm_head
    tries: float = 3.0  # generate at most tries x nsamples windows per language before giving up
    check_language: bool = True
    min_script_share: float = 0.8  # share of the letters in the language's script (Latin, Arabic, ...)
    perplexity_fence: float = 1.5  # Tukey's k: drop log perplexities beyond Q1 - k IQR or Q3 + k IQR; 0: off
    max_perplexity: float = 1000.0  # and any window above this perplexity

    def validate(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"data.generation.temperature must be positive, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"data.generation.top_k must be 0 (off) or more, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"data.generation.top_p must lie in (0, 1], got {self.top_p}")
        if self.batch_size < 1:
            raise ConfigError(f"data.generation.batch_size must be at least 1, got {self.batch_size}")
        if self.tries < 1:
            raise ConfigError(f"data.generation.tries must be at least 1 (x data.nsamples windows), got {self.tries}")
        if not 0.0 <= self.min_script_share <= 1.0:
            raise ConfigError(f"data.generation.min_script_share must lie in [0, 1], got {self.min_script_share}")
        if self.perplexity_fence < 0 or not self.max_perplexity > 1:
            raise ConfigError(
                "data.generation.perplexity_fence must be 0 or more and max_perplexity above 1, got "
                f"{self.perplexity_fence} and {self.max_perplexity}"
            )


@dataclass
class DataConfig:
    """Calibration and evaluation text.

    source: packaged (dataset-build text, offline), mc4 (allenai/c4 streaming, needs network),
    files (local UTF-8 text, `files: {lang: path}`), tokens (a [n, seqlen] .pt/.npy file of token ids
    used as the calibration windows as they are), generated (the model writes the calibration text
    after it loads, see GenerationConfig; evaluation text is the packaged one).
    """

    source: str = "packaged"
    # A language, or a mix (calibration_mix): "en+sw", "all", counts "en:64,sw:64", proportions "en:0.4,sw:0.6".
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
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        if isinstance(self.generation, dict):  # read back from a run's config.yaml
            self.generation = GenerationConfig(**self.generation)

    def validate(self) -> None:
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
        if self.source == "generated":
            self.generation.validate()
        mix = self.calibration_counts()
        if self.source == "tokens" and len(mix) > 1:
            raise ConfigError("data.source 'tokens' takes its windows from the file: a calibration mix needs text")
        for lang in mix:
            if self.source == "files" and lang not in self.files:
                raise ConfigError(f"data.source 'files' needs data.files.{lang}: a text file per language")

    def calibration_counts(self) -> dict[str, int]:
        """Calibration windows per language: the mix `calibration_language` names (see calibration_mix)."""
        return calibration_mix(self.calibration_language, self.nsamples)

    @property
    def calibration_samples(self) -> int:
        """Calibration windows in all: data.nsamples, or the sum of a mix's explicit counts."""
        return sum(self.calibration_counts().values())


@dataclass
class PruneConfig:
    """How to prune: method, target sparsity or N:M pattern, solver settings."""

    method: str = "sparsegpt"
    sparsity: float = 0.5
    pattern: str = "unstructured"  # or "N:M", e.g. "2:4" (sparsity is then N/M)
    blocksize: int = 128
    percdamp: float = 0.01
    true_sequential: bool = False
    # One forward per decoder layer instead of two: all calibration windows go through the layer as
    # one batch, and each true-sequential group is pruned in a hook just before its first Linear
    # runs, on inputs from the already-pruned groups before it. Needs memory for one layer's
    # activations of all windows at once.
    single_pass: bool = False
    # Per-Linear pruning error and SNR on the calibration inputs need each input's X^T X. SparseGPT
    # builds it anyway; Wanda needs only its diagonal, so false spares Wanda the Gram matrices
    # (~25% of its pruning time; error and SNR are then recorded as NaN). The norms are then summed
    # directly instead of read off the Gram diagonal: near-ties can flip (Gemma-3-270M: 5,224 of
    # 100M weights).
    local_error: bool = True
    # OWL (Yin et al. 2024): per-layer sparsity from the layer's share of outlier Wanda scores
    # (scores above owl_threshold x the layer mean), spread over a range 2 x owl_lambda wide.
    owl: bool = False
    owl_threshold: float = 5.0
    owl_lambda: float = 0.08

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
        if self.owl:
            self._validate_owl()

    def _validate_owl(self) -> None:
        if self.n_m is not None:
            raise ConfigError("prune.owl sets a sparsity per layer: it needs prune.pattern unstructured, not N:M")
        if self.owl_threshold <= 0:
            raise ConfigError(f"prune.owl_threshold must be positive, got {self.owl_threshold}")
        # Layer sparsities lie within sparsity +- 2 * lambda, which must stay inside [0, 1).
        if not (0.0 <= 2 * self.owl_lambda <= self.sparsity and self.sparsity + 2 * self.owl_lambda < 1.0):
            bound = min(self.sparsity, 1.0 - self.sparsity) / 2
            raise ConfigError(
                f"prune.owl_lambda {self.owl_lambda} must lie in [0, {bound:g}) at sparsity {self.sparsity:g}: "
                "layer sparsities lie within sparsity +- 2 x owl_lambda"
            )

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
    proxy = the offline proxy tasks, proxy_calibration = those of the calibration languages only,
    belebele / arc / hellaswag / mmlu / mkqa = the study's tasks, study = all five). Empty: no
    downstream evaluation. See lp_prune.evaluation.downstream.
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
    # Scale (README "Scaling up"): data-parallel calibration over devices x num_nodes processes
    # (strategy ddp: gloo on CPU, NCCL on GPU); the model kept on the CPU with one decoder layer at
    # a time on the accelerator; cached layer inputs on the device, in CPU memory or on disk.
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    offload_layers: bool = False
    activations: str = "device"
    check_memory: bool = True  # stop before loading weights if the estimate exceeds free memory
    seed: int = 0

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.prune.validate()
        self.eval.validate()
        self.wandb.validate()
        if self.devices < 1 or self.num_nodes < 1:
            raise ConfigError(f"devices and num_nodes must be at least 1, got {self.devices} and {self.num_nodes}")
        if self.data.calibration_samples < self.world_size:
            raise ConfigError(
                f"{self.data.calibration_samples} calibration windows cannot be shared by {self.world_size} processes"
            )
        if self.activations not in ACTIVATION_PLACES:
            raise ConfigError(f"activations '{self.activations}' is not one of: {', '.join(ACTIVATION_PLACES)}")

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_language(lang: str, key: str) -> None:
    if lang not in LANGUAGES:
        raise ConfigError(f"{key}: unknown language '{lang}'; valid languages: {', '.join(LANGUAGES)}")


def calibration_mix(spec: str, nsamples: int) -> dict[str, int]:
    """Windows per language for a calibration spec, in the spec's order.

    "en"                 -> {en: nsamples}
    "en+sw"              -> nsamples split evenly (the first languages take the remainder)
    "all"                -> all seven languages, split evenly
    "en:64,sw:64"        -> exactly these counts (they take precedence over data.nsamples)
    "en:0.4,zh:0.2,..."  -> proportions of data.nsamples (see proportional_counts); they must sum
                            to 1 (within 1e-6), and counts and proportions cannot be mixed
    """
    spec = spec.strip()
    if ":" in spec:
        values = _mix_values(spec)
        if all(isinstance(v, int) for v in values.values()):
            return values  # type: ignore[return-value]
        total = sum(values.values())
        if abs(total - 1.0) > MIX_SUM_TOLERANCE:
            raise ConfigError(
                f"data.calibration_language '{spec}': proportions sum to {total:g}, not 1 (write counts such as en:64 "
                "for unnormalised weights)"
            )
        _check_enough_samples(nsamples, len(values), spec)
        return proportional_counts(values, nsamples)
    langs = list(LANGUAGES) if spec == "all" else [lang.strip() for lang in spec.split("+")]
    for lang in langs:
        check_language(lang, "data.calibration_language")
    if len(set(langs)) < len(langs):
        raise ConfigError(f"data.calibration_language '{spec}' names a language twice")
    _check_enough_samples(nsamples, len(langs), spec)
    share, extra = divmod(nsamples, len(langs))
    return {lang: share + (i < extra) for i, lang in enumerate(langs)}


MIX_SUM_TOLERANCE = 1e-6  # proportions of a weighted mix must sum to 1 within this
_COUNT = re.compile(r"^\d+$")
_PROPORTION = re.compile(r"^(\d+\.\d*|\.\d+)$")  # a decimal point marks a proportion: 0.4, .4, 1.0


def _mix_values(spec: str) -> dict[str, int | float]:
    """'en:64,sw:16' -> {en: 64, sw: 16}; 'en:0.4,sw:0.6' -> {en: 0.4, sw: 0.6}; one kind only."""
    values: dict[str, int | float] = {}
    for part in spec.split(","):
        lang, _, raw = (x.strip() for x in part.strip().partition(":"))
        check_language(lang, "data.calibration_language")
        if lang in values:
            raise ConfigError(f"data.calibration_language '{spec}' names '{lang}' twice")
        if _COUNT.match(raw) and int(raw) >= 1:
            values[lang] = int(raw)
        elif _PROPORTION.match(raw) and 0.0 < float(raw) <= 1.0:
            values[lang] = float(raw)
        else:
            raise ConfigError(
                f"data.calibration_language '{spec}': '{part.strip()}' needs a positive count (en:64) "
                "or a proportion in (0, 1] (en:0.4)"
            )
    if len({type(v) for v in values.values()}) > 1:
        raise ConfigError(
            f"data.calibration_language '{spec}' mixes counts and proportions: write all as counts (en:64) "
            "or all as proportions (en:0.4)"
        )
    return values


def proportional_counts(proportions: dict[str, float], nsamples: int) -> dict[str, int]:
    """Largest-remainder rounding of nsamples x p per language, every language at least one window.

    Each language gets floor(nsamples x p); the windows left over go one each to the largest
    remainders (ties: the earlier language of the spec). A language rounded to 0 then gets one
    window from the language whose count exceeds its quota nsamples x p the most (among those with
    two or more). The counts always sum to nsamples; needs nsamples >= the number of languages.
    """
    total = sum(proportions.values())  # 1 within MIX_SUM_TOLERANCE; dividing keeps sum(quotas) == nsamples
    quotas = {lang: nsamples * p / total for lang, p in proportions.items()}
    counts = {lang: math.floor(q) for lang, q in quotas.items()}
    order = list(quotas)
    by_remainder = sorted(order, key=lambda lang: (-(quotas[lang] - counts[lang]), order.index(lang)))
    for lang in by_remainder[: nsamples - sum(counts.values())]:
        counts[lang] += 1
    for lang in order:
        if counts[lang] == 0:
            donors = [d for d in order if counts[d] >= 2]
            donor = max(donors, key=lambda d: (counts[d] - quotas[d], -order.index(d)))
            counts[donor] -= 1
            counts[lang] = 1
    return counts


def _check_enough_samples(nsamples: int, n_languages: int, spec: str) -> None:
    if nsamples < n_languages:
        raise ConfigError(f"data.nsamples {nsamples} is fewer than the {n_languages} languages of '{spec}'")


# Downstream task shorthands (lp_prune.evaluation.downstream expands them per language).
# proxy_calibration: the proxy tasks of the run's calibration languages only (sweeps over targets).
TASK_SHORTHANDS: tuple[str, ...] = (
    "proxy",
    "proxy_calibration",
    "belebele",
    "arc",
    "hellaswag",
    "mmlu",
    "mkqa",
    "study",
)
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
