"""Typed run configuration: one dataclass per concern, validated before any heavy work.

The CLI builds a `RunConfig` from a YAML file in `configs/` plus dotted command-line overrides
(`--prune.method wanda --data.calibration_language sw`), the LightningCLI way (jsonargparse).
Choices are `Literal` types, so the parser checks them and `--help` lists them; the docstring under
each field is its `--help` description. A saved run's config.yaml is read back by `read_run_config`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from lp_prune.errors import ConfigError, DataError

Method = Literal["sparsegpt", "wanda", "magnitude"]
DataSource = Literal["packaged", "mc4", "files", "tokens", "generated"]
Dtype = Literal["float32", "bfloat16", "float16"]
ActivationPlace = Literal["device", "cpu", "disk"]
WandbMode = Literal["auto", "online", "offline", "disabled"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
Strategy = Literal["auto", "ddp"]
LocalErrorMode = Literal["auto", "exact", "sample", "off"]
StatisticsRule = Literal["pooled", "balanced", "weighted"]

LANGUAGES: tuple[str, ...] = ("ar", "de", "en", "es", "ru", "sw", "zh")
METHODS: tuple[str, ...] = get_args(Method)
DATA_SOURCES: tuple[str, ...] = get_args(DataSource)
DTYPES: tuple[str, ...] = get_args(Dtype)
ACTIVATION_PLACES: tuple[str, ...] = get_args(ActivationPlace)
WANDB_MODES: tuple[str, ...] = get_args(WandbMode)

PACKAGED_MODEL = "gemma3-270m"


@dataclass
class ModelConfig:
    """Which model to prune: the packaged default, a hub id, or a local folder."""

    name: str = PACKAGED_MODEL
    """Model to prune: 'gemma3-270m' (packaged, offline), a local HF folder, or a Hugging Face Hub id."""
    dtype: Dtype = "float32"
    """Weights and forward passes (statistics are float64 sums and solves float32 whatever this says)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of a hub model."""
    trust_remote_code: bool = False
    """Let transformers run the model repository's own code."""

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
    """Sampling temperature."""
    top_k: int = 64
    """Sample among the top_k most likely tokens (0: no cut; then top_p sorts the whole vocabulary: slow)."""
    top_p: float = 0.95
    """Nucleus sampling: the smallest set of tokens holding this probability."""
    batch_size: int = 32
    """Sequences per generate call (KV cache on; every step reads the whole LM head)."""
    tries: float = 3.0
    """Generate at most tries x nsamples windows per language before giving up."""
    check_language: bool = True
    """Drop windows in another language (script share; stopwords for de, en, es, sw: approximate)."""
    min_script_share: float = 0.8
    """Share of the letters that must be in the language's script (Latin, Arabic, Cyrillic, Han)."""
    perplexity_fence: float = 1.5
    """Tukey's k: drop log perplexities beyond Q1 - k IQR or Q3 + k IQR (0: off)."""
    max_perplexity: float = 1000.0
    """And drop any window above this perplexity."""

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
    """Calibration and evaluation text."""

    source: DataSource = "packaged"
    """Text source: packaged (dataset-build text, offline), mc4 (allenai/c4 streaming, needs network), files
    (local UTF-8 text, data.files), tokens (data.token_file: calibration windows as they are), generated
    (the model writes its calibration text after it loads: data.generation; evaluation on packaged text)."""
    calibration_language: str = "en"
    """Calibration text: a language (ar, de, en, es, ru, sw, zh), or a mix: en+sw (even split), all, counts
    en:64,sw:64, proportions en:0.4,sw:0.6 (of data.nsamples, largest remainder)."""
    eval_languages: list[str] = field(default_factory=lambda: list(LANGUAGES))
    """Languages whose held-out text is evaluated (perplexity, bits per byte)."""
    nsamples: int = 32
    """Calibration windows (a mix's explicit counts take precedence)."""
    seqlen: int = 256
    """Tokens per calibration window, BOS included."""
    eval_windows: int = 8
    """Held-out windows per evaluation language (0: no perplexity evaluation)."""
    eval_seqlen: int = 256
    """Tokens per evaluation window."""
    eval_fraction: float = 0.2
    """Share of packaged or local text held out for evaluation (never used for calibration)."""
    batch_size: int = 8
    """Calibration windows per forward pass."""
    eval_batch_size: int = 8
    """Evaluation windows per forward pass (the LM head then runs on 256 positions at a time)."""
    files: dict[str, str] = field(default_factory=dict)
    """data.source files: a UTF-8 text file per language, e.g. {en: my.txt}."""
    token_file: str | None = None
    """data.source tokens: a [n, seqlen] .pt or .npy file of token ids."""
    seed: int = 0
    """Seed of the calibration window draw; for mc4 it also shuffles the stream (other seed, other documents)."""
    shuffle_buffer: int = 10_000
    """mc4: rows the seeded streaming shuffle draws from (datasets' buffer_size)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """data.source generated: how the model writes its calibration text."""

    def __post_init__(self) -> None:
        if isinstance(self.generation, dict):  # built from a plain dict (W&B configs, tests)
            self.generation = GenerationConfig(**self.generation)

    def validate(self) -> None:
        for lang in self.eval_languages:
            check_language(lang, "data.eval_languages")
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"data.source '{self.source}' is not one of: {', '.join(DATA_SOURCES)}")
        for key in ("nsamples", "seqlen", "eval_seqlen", "batch_size", "eval_batch_size", "shuffle_buffer"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be at least 1, got {getattr(self, key)}")
        if self.eval_windows < 0:
            raise ConfigError(f"data.eval_windows must be 0 or more, got {self.eval_windows}")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError(f"data.eval_fraction must lie in (0, 1), got {self.eval_fraction}")
        check_seed(self.seed, "data.seed")
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

    method: Method = "sparsegpt"
    """Pruning method: SparseGPT (second-order, updates kept weights), Wanda (|W| x input norm), magnitude."""
    sparsity: float = 0.5
    """Fraction of each Linear's weights to prune (unstructured)."""
    pattern: str = "unstructured"
    """'unstructured', or N:M such as 2:4 (N of every M consecutive inputs pruned; sparsity is then N/M)."""
    blocksize: int = 128
    """SparseGPT: columns per block (unstructured masks are chosen per block)."""
    percdamp: float = 0.01
    """SparseGPT: damping added to the Hessian diagonal, as a fraction of its mean."""
    true_sequential: bool = False
    """Prune [q,k,v] -> [o] -> [gate,up] -> [down], each group calibrated on the pruned groups' outputs."""
    # One forward per decoder layer instead of two: all calibration windows go through the layer as
    # one batch, and each true-sequential group is pruned in a hook just before its first Linear
    # runs, on inputs from the already-pruned groups before it. Needs memory for one layer's
    # activations of all windows at once.
    single_pass: bool = False
    """The true-sequential result with one forward per layer (all windows in one batch: more memory)."""
    # Per-Linear pruning error and SNR on the calibration inputs. Exact needs each input's X^T X, which
    # SparseGPT builds anyway; for Wanda it costs more than Wanda itself (o_proj, down_proj), so by
    # default Wanda and magnitude measure on a seeded sample of `metric_tokens` calibration tokens
    # (`sample`). `off` records NaN and keeps Wanda to the squared input norms.
    local_error: LocalErrorMode | bool = "auto"
    """Per-Linear error and SNR: auto (exact for SparseGPT, sample for Wanda and magnitude), exact, sample,
    off (true/false from older configs mean exact/off)."""
    metric_tokens: int = 2048
    """local_error sample: about this many calibration tokens, seeded, measure the error metrics."""
    statistics: StatisticsRule = "pooled"
    """How calibration languages combine in the input statistics: pooled (every token equal), balanced
    (every language equal, whatever its share of the windows), weighted (prune.language_weights)."""
    language_weights: dict[str, float] = field(default_factory=dict)
    """statistics weighted: each calibration language's share of the statistics, e.g. {en: 0.5, sw: 0.5}."""
    # OWL (Yin et al. 2024): per-layer sparsity from the layer's share of outlier Wanda scores
    # (scores above owl_threshold x the layer mean), spread over a range 2 x owl_lambda wide.
    owl: bool = False
    """OWL: a sparsity per layer from its share of outlier Wanda scores (mean stays prune.sparsity)."""
    owl_threshold: float = 5.0
    """OWL: a score above this many times its layer's mean is an outlier."""
    owl_lambda: float = 0.08
    """OWL: layer sparsities span 2 x owl_lambda around prune.sparsity."""

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
        if self.metric_tokens < 1:
            raise ConfigError(f"prune.metric_tokens must be at least 1, got {self.metric_tokens}")
        if self.owl:
            self._validate_owl()
        for lang, weight in self.language_weights.items():
            check_language(lang, "prune.language_weights")
            if not weight > 0:
                raise ConfigError(f"prune.language_weights.{lang} must be positive, got {weight}")
        if self.statistics == "weighted" and not self.language_weights:
            raise ConfigError("prune.statistics weighted needs prune.language_weights, e.g. {en: 0.5, sw: 0.5}")

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
    def local_error_mode(self) -> str:
        """exact, sample or off: what `local_error` means for this method."""
        if isinstance(self.local_error, bool):
            return "exact" if self.local_error else "off"
        if self.local_error == "auto":
            return "exact" if self.method == "sparsegpt" else "sample"
        return self.local_error

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
    """Measure perplexity and bits per byte on the held-out text of every evaluation language."""
    dense_baseline: bool = True
    """Also evaluate the unpruned model."""
    cache_dense: bool = True
    """Reuse the dense results of an identical model and windows (sweeps evaluate the dense model once)."""
    tasks: list[str] | str = field(default_factory=list)
    """Downstream tasks via lm-eval: task names or shorthands (proxy, belebele, arc, hellaswag, mmlu, mkqa, study),
    as a list or comma-separated like lm-eval's --tasks (belebele,arc)."""
    limit: int | None = None
    """At most this many items per task (quick runs); null: all."""
    num_fewshot: int = 0
    """Few-shot examples per item (0: zero-shot, as in the study)."""
    batch_size: int = 8
    """lm-eval requests per forward pass."""
    include_path: str | list[str] | None = None
    """Folder(s) of your own lm-eval task YAMLs (lm-eval's TaskManager include_path)."""

    def __post_init__(self) -> None:
        self.tasks = split_list(self.tasks)

    @property
    def include_paths(self) -> list[str]:
        return [self.include_path] if isinstance(self.include_path, str) else list(self.include_path or [])

    def validate(self) -> None:
        self.tasks = split_list(self.tasks)
        for name in self.tasks:
            check_task_name(name)
        for path in self.include_paths:
            if not Path(path).expanduser().is_dir():
                raise ConfigError(f"eval.include_path '{path}' is not a folder of lm-eval task YAML files")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"eval.limit must be at least 1 (or null for all items), got {self.limit}")
        if self.num_fewshot < 0:
            raise ConfigError(f"eval.num_fewshot must be 0 or more, got {self.num_fewshot}")
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size must be at least 1, got {self.batch_size}")


@dataclass
class WandbConfig:
    """W&B tracking."""

    project: str = "lp_prune"
    """W&B project (inside a W&B sweep, the sweep's project wins)."""
    mode: WandbMode = "auto"
    """auto: online with an API key, else offline (synced later with wandb sync); or online, offline, disabled."""
    group: str | None = None
    """W&B group (sweeps set it to the sweep's name)."""
    tags: list[str] = field(default_factory=list)
    """W&B tags."""
    name: str | None = None
    """W&B run name (default: W&B's own)."""

    def validate(self) -> None:
        if self.mode not in WANDB_MODES:
            raise ConfigError(f"wandb.mode '{self.mode}' is not one of: {', '.join(WANDB_MODES)}")


@dataclass
class RunConfig:
    """One pruning run: model x data x method, then evaluation, tracking and a run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model."""
    data: DataConfig = field(default_factory=DataConfig)
    """Calibration and evaluation text."""
    prune: PruneConfig = field(default_factory=PruneConfig)
    """How to prune."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """What to measure after pruning."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """W&B tracking."""
    out: str | None = None
    """Run directory (default: runs/<model>-<method>-<language>-<time>)."""
    save_model: bool = False
    """Save the pruned model (safetensors) and tokenizer in RUN_DIR/model."""
    save_shard_size: int | str = "50GB"
    """Largest weight file of a saved model: bytes, or 5GB / 500MB / 2GiB; above it the model is written in
    shards with an index, as transformers' save_pretrained does (whose default this is)."""
    overwrite: bool = False
    """Replace a complete run in the run directory."""
    checkpoint: bool = True
    """Save every pruned layer, so that --resume can continue after a crash."""
    accelerator: Accelerator = "auto"
    """Lightning accelerator (auto also honours fabric run's LT_ACCELERATOR)."""
    # Scale (README "Scaling up"): data-parallel calibration over devices x num_nodes processes
    # (strategy ddp: gloo on CPU, NCCL on GPU); the model kept on the CPU with one decoder layer at
    # a time on the accelerator; cached layer inputs on the device, in CPU memory or on disk.
    devices: int = 1
    """Processes per machine (data-parallel calibration with strategy ddp)."""
    num_nodes: int = 1
    """Machines."""
    strategy: Strategy = "auto"
    """Lightning strategy: auto (one process) or ddp (calibration windows shared, statistics all-reduced)."""
    offload_layers: bool = False
    """Keep the model in CPU memory; only the decoder layer at work is on the device."""
    activations: ActivationPlace = "device"
    """Where the cached layer inputs live between steps."""
    check_memory: bool = True
    """Stop before loading weights if the memory estimate exceeds free memory."""
    compile_layers: bool = False
    """torch.compile the decoder layers for the passes without hooks (propagate, perplexity); see README."""
    seed: int = 0
    """Seed of Lightning's random generators."""

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.prune.validate()
        self.eval.validate()
        self.wandb.validate()
        check_seed(self.seed, "seed")
        if self.devices < 1 or self.num_nodes < 1:
            raise ConfigError(f"devices and num_nodes must be at least 1, got {self.devices} and {self.num_nodes}")
        if self.data.calibration_samples < self.world_size:
            raise ConfigError(
                f"{self.data.calibration_samples} calibration windows cannot be shared by {self.world_size} processes"
            )
        size_in_bytes(self.save_shard_size, "save_shard_size")
        if self.prune.statistics == "weighted":
            missing = sorted(set(self.data.calibration_counts()) - set(self.prune.language_weights))
            if missing:
                raise ConfigError(f"prune.language_weights has no weight for calibration language {', '.join(missing)}")
        if self.activations not in ACTIVATION_PLACES:
            raise ConfigError(f"activations '{self.activations}' is not one of: {', '.join(ACTIVATION_PLACES)}")

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SEED_LIMIT = 2**32  # numpy's seeds, and so L.seed_everything's, lie in [0, 2**32)


def check_seed(seed: Any, key: str) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{key} must be a non-negative integer below 2**32 (numpy's limit), got {seed!r}")


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


def split_list(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """'belebele,arc' or ['belebele,arc', 'proxy'] -> ['belebele', 'arc', 'proxy']."""
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


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


def run_config_from(namespace: Any) -> RunConfig:
    """A RunConfig from a parsed and instantiated jsonargparse namespace of RunConfig's arguments."""
    return RunConfig(**{f.name: namespace[f.name] for f in fields(RunConfig)})


def run_config_parser() -> Any:
    """The parser of RunConfig's keys, as `lp-prune run` reads them (YAML, dotted flags, --help)."""
    from jsonargparse import ArgumentParser, set_parsing_settings

    set_parsing_settings(docstring_parse_attribute_docstrings=True)  # field docstrings -> --help
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(RunConfig)
    return parser


def read_run_config(path: str | Path) -> RunConfig:
    """A run's saved config.yaml, parsed and type-checked like the command line's."""
    from lp_prune.safe_yaml import load_yaml_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such run config; not a run directory")
    try:
        values = load_yaml_file(path)
    except ConfigError as err:
        raise DataError(f"cannot read run config {path}: {err}") from None
    if not isinstance(values, dict) or "model" not in values:
        raise DataError(f"{path} is not an lp_prune run config (no 'model' section)")
    parser = run_config_parser()
    try:
        return run_config_from(parser.instantiate_classes(parser.parse_object(values)))
    except Exception as err:  # jsonargparse reports type errors as several exception types
        detail = " ".join(str(err).split())
        raise DataError(f"{path} is not a valid lp_prune run config: {detail}") from None


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]I?B)?", re.IGNORECASE)
_SIZE_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}  # decimal, as transformers / the Hub
_SIZE_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def size_in_bytes(size: int | str, key: str = "size") -> int:
    """A positive size: an int of bytes, or a string such as "5GB" (10^9), "500MB", "2GiB" (2^30), "1000"."""
    if isinstance(size, bool) or not isinstance(size, int | str):
        raise ConfigError(f"{key} must be a number of bytes or a size such as '5GB', got {size!r}")
    if isinstance(size, str):
        match = _SIZE.fullmatch(size.strip())
        if match is None:
            raise ConfigError(f"{key} '{size}' is not a size such as '5GB', '500MB', '2GiB' or a number of bytes")
        number, unit = match.groups()
        size = int(float(number) * _SIZE_UNITS[unit.upper()] if unit else float(number))
    if size < 1:
        raise ConfigError(f"{key} must be at least 1 byte, got {size}")
    return size
