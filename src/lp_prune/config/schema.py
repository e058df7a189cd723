"""The run configuration's schema: one dataclass per concern, validated before any heavy work.

The CLI builds a `RunConfig` from a YAML file in `configs/` plus dotted command-line overrides
(`--prune.method wanda --data.calibration_language sw`), the LightningCLI way (jsonargparse; see
lp_prune.config.io). Choices are `Literal` types, so the parser checks them and `--help` lists them;
the docstring under each field is its `--help` description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from lp_prune.config.data_schema import DataConfig
from lp_prune.config.prune_schema import PruneConfig
from lp_prune.config.recipe import CalibrationRecipe
from lp_prune.config.tasks import check_task_language, check_task_name, split_list
from lp_prune.config.values import check_finite, check_seed, parse_devices, size_in_bytes
from lp_prune.errors import ConfigError

Dtype = Literal["float32", "bfloat16", "float16", "float64"]
ActivationPlace = Literal["device", "cpu", "disk"]
WandbMode = Literal["auto", "online", "offline", "disabled"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
Strategy = Literal["auto", "ddp"]

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


def _uses_cuda(accelerator: str) -> bool:
    """Whether Lightning runs on CUDA GPUs with this accelerator (auto: when one is visible)."""
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


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
