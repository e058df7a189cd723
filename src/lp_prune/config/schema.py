"""The run configuration's schema: one dataclass per concern, validated before any heavy work.

The CLI builds a `RunConfig` from a YAML file in `configs/` plus dotted command-line overrides
(`--prune.method wanda --data.calibration_language sw`), the LightningCLI way (jsonargparse; see
lp_prune.config.io). Choices are `Literal` types, so the parser checks them and `--help` lists them;
the docstring under each field is its `--help` description.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from lp_prune.config.data_schema import DataConfig
from lp_prune.config.method_keys import with_settings
from lp_prune.config.recipe import CalibrationRecipe
from lp_prune.config.targets import LinearTargets, check_patterns
from lp_prune.config.tasks import check_task_language, check_task_name, split_list
from lp_prune.config.values import check_finite, check_seed, parse_devices, parse_pattern, size_in_bytes
from lp_prune.errors import ConfigError
from lp_prune.languages import check_known_language
from lp_prune.pruning.method import PruneContext, PruningMethod
from lp_prune.pruning.registry import DEFAULT_METHOD, build_method, check_known, choice_of

Dtype = Literal["float32", "bfloat16", "float16", "float64"]
ActivationPlace = Literal["device", "cpu", "disk"]
WandbMode = Literal["auto", "online", "offline", "disabled"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
Strategy = Literal["auto", "ddp"]
LocalErrorMode = Literal["auto", "exact", "sample", "off"]
StatisticsRule = Literal["pooled", "balanced", "weighted"]

DTYPES: tuple[str, ...] = get_args(Dtype)
ACTIVATION_PLACES: tuple[str, ...] = get_args(ActivationPlace)
WANDB_MODES: tuple[str, ...] = get_args(WandbMode)

PACKAGED_MODEL = "gemma3-270m"
WANDB_PROJECT_FORBIDDEN = "/\\#?%:"  # wandb.Settings refuses a project name with any of these


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
    """Let transformers run the model repository's own code. Only this flag on the command line turns it on,
    never a --config file, a run folder's config.yaml or a sweep file."""

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype '{self.dtype}' is not one of: {', '.join(DTYPES)}")


@dataclass
class PruneConfig:
    """How to prune: the method with its own settings, and what every method shares (target sparsity or
    N:M pattern, order, statistics, error metrics, OWL)."""

    method: PruningMethod = field(default_factory=lambda: build_method(DEFAULT_METHOD))
    """Pruning method: sparsegpt (second-order, updates kept weights), wanda (|W| x input norm), magnitude, the
    quantization methods gptq (second-order) and rtn (round-to-nearest), sparsegpt_gptq (pruning and GPTQ in one
    column loop), wanda_sp (structured), one registered through lp_prune.pruning.register, or the class path of
    an imported PruningMethod. Its own settings are the flat keys below (prune.blocksize, prune.bits, ...);
    those of other methods are ignored."""
    sparsity: float = 0.5
    """Fraction of each Linear's weights to prune (unstructured). Ignored by gptq and rtn, which prune nothing:
    their summary's sparsity counts the weights that rounded to exactly 0."""
    pattern: str = "unstructured"
    """'unstructured', or N:M such as 2:4 (N of every M consecutive inputs pruned; sparsity is then N/M)."""
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
    targets: list[str] | str = field(default_factory=lambda: ["Linear"])
    """Which Linears of the decoder layers are pruned, as llm-compressor names modules: a class (Linear), a module
    name or its last parts (down_proj, mlp.down_proj), or re:<regex> matched from the start of the full module
    name (re:.*self_attn.*)."""
    ignore: list[str] | str = field(default_factory=list)
    """Linears left as they are although a target names them, in the same patterns (e.g. [re:.*down_proj])."""

    def __post_init__(self) -> None:
        if isinstance(self.method, str):  # a name or class path, with the method's default settings
            self.method = build_method(self.method)

    @classmethod
    def of(cls, method: str | PruningMethod = DEFAULT_METHOD, **values: Any) -> PruneConfig:
        """From flat keys, as YAML and the command line spell them: the shared keys, and beside them the
        chosen method's settings (those of other methods are ignored; config.method_keys)."""
        shared = {item.name for item in fields(cls)}
        settings = {key: value for key, value in values.items() if key not in shared}
        return cls(with_settings(method, settings), **{key: values[key] for key in values if key in shared})

    def to_dict(self) -> dict[str, Any]:
        """As YAML spells it: the method's name (or class path), its settings as flat keys, the shared keys."""
        shared = {item.name: copy.deepcopy(getattr(self, item.name)) for item in fields(self) if item.name != "method"}
        return {"method": choice_of(self.method), **self.method.settings(), **shared}

    def validate(self) -> None:
        check_known(self.method)  # one line naming the known methods
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"prune.sparsity must lie in [0, 1), got {self.sparsity}")
        parse_pattern(self.pattern)
        self.method.validate()
        if self.metric_tokens < 1:
            raise ConfigError(f"prune.metric_tokens must be at least 1, got {self.metric_tokens}")
        if self.owl and not self.method.zeroes:
            raise ConfigError(
                f"prune.owl sets a sparsity per layer, but {self.method.name} quantizes and prunes nothing"
            )
        if self.owl:
            self._validate_owl()
        for lang, weight in self.language_weights.items():
            check_known_language(lang, "prune.language_weights")
            if not weight > 0:
                raise ConfigError(f"prune.language_weights.{lang} must be positive, got {weight}")
        if self.statistics == "weighted" and not self.language_weights:
            raise ConfigError("prune.statistics weighted needs prune.language_weights, e.g. {en: 0.5, sw: 0.5}")
        self.targets, self.ignore = _pattern_list(self.targets), _pattern_list(self.ignore)
        if not self.targets:
            raise ConfigError("prune.targets is empty, so nothing would be pruned; the default is [Linear]")
        check_patterns(self.targets, "prune.targets")
        check_patterns(self.ignore, "prune.ignore")

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
    def linear_targets(self) -> LinearTargets:
        """The Linears this config prunes (prune.targets less prune.ignore)."""
        return LinearTargets(tuple(_pattern_list(self.targets)), tuple(_pattern_list(self.ignore)))

    @property
    def local_error_mode(self) -> str:
        """exact, sample or off: what `local_error` means for this method."""
        if isinstance(self.local_error, bool):
            return "exact" if self.local_error else "off"
        if self.local_error == "auto":
            return self.method.default_local_error
        return self.local_error

    @property
    def context(self) -> PruneContext:
        """What every method reads besides its own settings: the pattern and the target sparsity."""
        return PruneContext(self.n_m, self.sparsity)

    @property
    def target_sparsity(self) -> float:
        """What the method aims for: N/M for a pattern, else `sparsity`; 0 for a method that prunes nothing."""
        if not self.method.zeroes:
            return 0.0
        nm = self.n_m
        return nm[0] / nm[1] if nm else self.sparsity


def _uses_cuda(accelerator: str) -> bool:
    """Whether Lightning runs on CUDA GPUs with this accelerator (auto: when one is visible)."""
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _pattern_list(patterns: list[str] | str | None) -> list[str]:
    """A list of module patterns; one pattern may be given alone (`--prune.ignore re:.*down_proj`)."""
    return [patterns] if isinstance(patterns, str) else list(patterns or [])


@dataclass
class EvalConfig:
    """What to measure after pruning.

    tasks: downstream tasks run through lm-eval on the dense (with dense_baseline) and the pruned
    model: lm-eval task names, or shorthands expanded over data.eval_languages (TASK_SHORTHANDS:
    proxy = the offline proxy tasks, proxy_calibration = those of the calibration languages only,
    probe = the offline knowledge-and-reasoning probe (every family; probe_<family> one of them,
    probe_calibration the calibration languages only), cldr = the offline CLDR probe (human-translated
    names from the Unicode CLDR; cldr_<family>, cldr_calibration alike), belebele / arc / hellaswag /
    mmlu / mkqa = the study's tasks, study = all five). Empty: no downstream evaluation. See
    lp_prune.evaluation.downstream, lp_prune.evaluation.probe and lp_prune.evaluation.probe_cldr.
    """

    perplexity: bool = True
    """Measure perplexity and bits per byte on the held-out text of every evaluation language."""
    dense_baseline: bool = True
    """Also evaluate the unpruned model."""
    cache_dense: bool = True
    """Reuse the dense results of an identical model and windows or tasks (sweeps evaluate the dense model once)."""
    tasks: list[str] | str = field(default_factory=list)
    """Downstream tasks via lm-eval: task names or shorthands (proxy, probe, cldr, belebele, arc, hellaswag, mmlu,
    mkqa, study), as a list or comma-separated like lm-eval's --tasks (belebele,arc)."""
    languages: list[str] = field(default_factory=list)
    """Languages the task shorthands expand over (empty: data.eval_languages): the seven, or Belebele configs
    such as fra_Latn, hin_Deva (belebele then runs belebele_fra_Latn; the other shorthands skip them)."""
    limit: int | None = None
    """At most this many items per task (quick runs); null: all."""
    num_fewshot: int = 0
    """Few-shot examples per item (0: zero-shot, as in the study)."""
    batch_size: int = 8
    """lm-eval requests per forward pass."""
    include_path: str | list[str] | None = None
    """Folder(s) of your own lm-eval task YAMLs (lm-eval's TaskManager include_path). Their !function entries are
    Python code: only this flag on the command line names them, never a --config file, a run folder's config.yaml
    or a sweep file."""

    def __post_init__(self) -> None:
        self.tasks = split_list(self.tasks)

    @property
    def include_paths(self) -> list[str]:
        return [self.include_path] if isinstance(self.include_path, str) else list(self.include_path or [])

    def validate(self) -> None:
        self.tasks = split_list(self.tasks)
        for name in self.tasks:
            check_task_name(name)
        for lang in self.languages:
            check_task_language(lang, "eval.languages")
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
    """W&B group (default: the run's setting, e.g. gemma3-270m-wanda-0.5; sweeps set the sweep's name)."""
    tags: list[str] = field(default_factory=list)
    """W&B tags (the setting, method and calibration recipe are added)."""
    name: str | None = None
    """W&B run name (default: from the recipe, e.g. wanda-0.5-en-d0: method, sparsity, calibration, draw)."""

    def validate(self) -> None:
        if self.mode not in WANDB_MODES:
            raise ConfigError(f"wandb.mode '{self.mode}' is not one of: {', '.join(WANDB_MODES)}")
        bad = sorted(set(self.project) & set(WANDB_PROJECT_FORBIDDEN))
        if bad or not 0 < len(self.project) <= 128:
            raise ConfigError(
                f"wandb.project '{self.project[:40]}' must be 1 to 128 characters without any of "
                f"{' '.join(WANDB_PROJECT_FORBIDDEN)} (W&B's rule)" + (f"; it has {' '.join(bad)}" if bad else "")
            )
        for index, tag in enumerate(self.tags):
            if not 1 <= len(tag) <= 64:
                raise ConfigError(f"wandb.tags[{index}] is {len(tag)} characters; W&B takes tags of 1 to 64")


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
    save_compressed: bool | Literal["sparse-bitmask"] = True
    """With --save_model, also RUN_DIR/model-compressed for a method that quantizes: its integer codes in
    compressed-tensors' pack-quantized format. 'sparse-bitmask': for a method that only prunes, the
    pruned Linears in compressed-tensors' legacy bitmask formats, which only lp_prune reads (transformers
    refuses the folder)."""
    save_shard_size: int | str = "50GB"
    """Largest weight file of a saved model: bytes, or 5GB / 500MB / 2GiB; above it the model is written in
    shards with an index, as transformers' save_pretrained does (whose default this is)."""
    overwrite: bool = False
    """Replace a complete run in the run directory."""
    checkpoint: bool = True
    """Save every pruned layer, so that --resume can continue after a crash."""
    accelerator: Accelerator = "auto"
    """Lightning accelerator (auto also honours fabric run's LT_ACCELERATOR)."""
    # Scale (docs/scaling.md): data-parallel calibration over devices x num_nodes processes
    # (strategy ddp: gloo on CPU, NCCL on GPU); the model kept on the CPU with one decoder layer at
    # a time on the accelerator; cached layer inputs on the device, in CPU memory or on disk.
    devices: int | list[int] | str = 1
    """Devices per machine, one process each (data-parallel calibration with strategy ddp), as Lightning spells
    them: a number, auto (every GPU here with a GPU accelerator, else 1), or device ids ([0,1] or 0,1)."""
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
    """torch.compile the decoder layers for the passes without hooks (propagate, perplexity); see docs/scaling.md."""
    seed: int = 0
    """Seed of Lightning's random generators."""

    def validate(self) -> None:
        check_finite(self)
        if self.out is not None and not self.out.strip():
            raise ConfigError("--out '' names no folder: give a run directory, or leave --out out for the default")
        self.model.validate()
        self.data.validate()
        self.prune.validate()
        self.eval.validate()
        self.wandb.validate()
        check_seed(self.seed, "seed")
        self.devices = parse_devices(self.devices)
        if isinstance(self.num_nodes, bool) or not isinstance(self.num_nodes, int) or self.num_nodes < 1:
            raise ConfigError(f"num_nodes must be a whole number of at least 1, got {self.num_nodes!r}")
        recipe = self.recipe()
        if recipe.total < self.world_size:
            raise ConfigError(f"{recipe.total} calibration windows cannot be shared by {self.world_size} processes")
        size_in_bytes(self.save_shard_size, "save_shard_size")
        if not isinstance(self.save_compressed, bool) and self.save_compressed != "sparse-bitmask":
            raise ConfigError(f"save_compressed '{self.save_compressed}' is not one of: true, false, sparse-bitmask")
        missing = recipe.missing_weights()
        if missing:
            raise ConfigError(f"prune.language_weights has no weight for calibration language {', '.join(missing)}")
        if self.activations not in ACTIVATION_PLACES:
            raise ConfigError(f"activations '{self.activations}' is not one of: {', '.join(ACTIVATION_PLACES)}")

    @property
    def world_size(self) -> int:
        return self.processes_per_machine * self.num_nodes

    @property
    def processes_per_machine(self) -> int:
        """How many devices `devices` names: its count, its ids, or for auto Lightning's choice (every
        visible GPU with a GPU accelerator, else 1)."""
        devices = parse_devices(self.devices)
        if isinstance(devices, list):
            return len(devices)
        if devices == "auto":
            import torch

            return max(torch.cuda.device_count(), 1) if _uses_cuda(self.accelerator) else 1
        return devices

    @property
    def trainer_devices(self) -> int | list[int] | str:
        """`devices` as Lightning's Trainer takes it for this accelerator (device ids on the CPU: their count)."""
        devices = parse_devices(self.devices)
        if isinstance(devices, list) and not _uses_cuda(self.accelerator):
            return len(devices)
        return devices

    def recipe(self) -> CalibrationRecipe:
        """The calibration recipe: data.calibration_language, data.nsamples and data.source with
        prune.statistics and prune.language_weights."""
        return self.data.recipe(self.prune.statistics, self.prune.language_weights)

    def to_dict(self) -> dict[str, Any]:
        """As config.yaml spells it (the method's settings flat under prune: PruneConfig.to_dict)."""
        values = asdict(self)
        values["prune"] = self.prune.to_dict()
        return values
