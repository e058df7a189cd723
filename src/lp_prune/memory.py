"""Memory a run will need per process, estimated from the model's config before any weights load.

Peak = runtime + weights held on the device + the larger of the calibration working set and the
evaluation working set. Calibration holds the cached layer inputs and, at any moment, either a
statistics pass (the float64 accumulators of the inputs being collected, plus one batch through one
layer) or a solve. Solves run one group of Linears sharing an input at a time (q/k/v, o, gate/up,
down), while the accumulators of the groups after it wait; a SparseGPT solve of a group with input
width c and r stacked rows holds 12 c^2 bytes (the float64 Gram with its float32 copy, then the
float32 Gram, the Hessian-turned-factor and the Cholesky factor L) plus its float32 rows, mask and
new weights. These terms follow what the code keeps alive (`calibration/pruner.py`,
`pruning/obs.py`); benchmarks/study_shapes.py checks them against measured peaks.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from lp_prune.config import RunConfig
from lp_prune.errors import ConfigError
from lp_prune.metrics.language_modeling import POSITION_CHUNK, VOCAB_CHUNK

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}
FLOAT32 = 4
CPU_RUNTIME = int(0.9 * GIB)  # python, torch, transformers, lightning, tokenizer, text: 0.90 GiB RSS measured
CUDA_CONTEXT = int(0.5 * GIB)
MAX_BUILT_LAYERS = 128  # the study's largest model has 80


def with_layers(config: PretrainedConfig, n_layers: int) -> PretrainedConfig:
    """A copy of `config` with `n_layers` decoder layers (per-layer lists such as layer_types cut to match)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if text.num_hidden_layers == n_layers:
        return config
    config = copy.deepcopy(config)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key, value in list(vars(text).items()):
        if isinstance(value, list) and len(value) == text.num_hidden_layers:
            setattr(text, key, value[:n_layers])
    text.num_hidden_layers = n_layers
    return config


@dataclass
class ModelShape:
    """Sizes that set the memory of a run (from a transformers config, or given for planning)."""

    total_params: int
    layer_params: int  # one decoder layer
    n_layers: int
    hidden: int
    intermediate: int
    attention_width: int  # input size of o_proj (heads x head_dim)
    vocab: int
    kv_width: int = 0  # output size of k_proj and v_proj (key-value heads x head_dim); 0: attention_width
    head_params: int = 0  # an LM head of its own (not tied to the embeddings)

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> ModelShape:
        """Exact parameter counts from a model built on the meta device (no memory, no download). A model
        of more than MAX_BUILT_LAYERS layers is built with that many and counted as if its other layers
        were alike (building a million layers, even weightless, would take hours)."""
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        n_layers = text.num_hidden_layers
        built = min(n_layers, MAX_BUILT_LAYERS)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(with_layers(config, built))
        from lp_prune.models.layers import decoder_layers  # the one place that knows architectures

        layers = decoder_layers(model)
        head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
        untied = head is not None and head.weight is not embeddings.weight
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        layer_params = max(sum(p.numel() for p in layer.parameters()) for layer in layers)
        return cls(
            total_params=sum(p.numel() for p in model.parameters()) + (n_layers - built) * layer_params,
            layer_params=layer_params,
            n_layers=n_layers,
            hidden=text.hidden_size,
            intermediate=text.intermediate_size,
            attention_width=heads * head_dim,
            vocab=text.vocab_size,
            kv_width=kv_heads * head_dim,
            head_params=head.weight.numel() if untied else 0,
        )

    def solve_groups(self) -> list[tuple[int, int]]:
        """(input width, stacked rows) of each group of Linears sharing an input, in solve order."""
        attn, kv = self.attention_width, self.kv_width or self.attention_width
        return [
            (self.hidden, attn + 2 * kv),  # q, k, v
            (attn, self.hidden),  # o
            (self.hidden, 2 * self.intermediate),  # gate, up
            (self.intermediate, self.hidden),  # down
        ]


@dataclass
class MemoryEstimate:
    """Bytes per process, by what holds them."""

    weights: int
    activations: int
    statistics: int  # accumulators of one statistics pass
    layer_work: int  # one batch through one layer
    solver: int  # the largest solve, with the accumulators still waiting for theirs
    evaluation: int
    runtime: int  # libraries and tokenizer in host memory, or the CUDA context
    device_kind: str  # where the weights and working sets live: "cpu" or "cuda"
    masks: int = 0  # packed masks kept by rank 0 (host memory)

    @property
    def calibration(self) -> int:
        return self.activations + max(self.statistics + self.layer_work, self.solver) + self.masks

    @property
    def peak(self) -> int:
        return self.runtime + self.weights + max(self.calibration, self.evaluation)

    def table(self, processes: int = 1) -> str:
        rows = [
            ("model weights", self.weights),
            ("cached layer inputs", self.activations),
            ("statistics (X^T X, float64)", self.statistics),
            ("one batch through one layer", self.layer_work),
            ("solver (largest group)", self.solver),
            ("packed masks", self.masks),
            ("evaluation logits", self.evaluation),
            ("runtime (libraries / context)", self.runtime),
            ("peak", self.peak),
        ]
        lines = [f"Memory estimate per process ({processes} process(es), {self.device_kind}):"]
        lines += [f"  {name:<30} {gib(value):>9}" for name, value in rows]
        return "\n".join(lines)


def gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.2f} GiB"


def estimate_memory(config: RunConfig, shape: ModelShape, device_kind: str = "cpu") -> MemoryEstimate:
    """What one process of `config` holds at its peak (see the module docstring)."""
    dtype_bytes = DTYPE_BYTES[config.model.dtype]
    data = config.data
    samples = math.ceil(data.calibration_samples / config.world_size)  # this process's share
    batch = samples if config.prune.single_pass else min(data.batch_size, samples)  # single pass: one batch
    tokens_per_batch = batch * data.seqlen

    if config.offload_layers and device_kind != "cpu":
        weights = (shape.total_params - shape.n_layers * shape.layer_params + shape.layer_params) * dtype_bytes
    else:
        weights = shape.total_params * dtype_bytes
    if device_kind == "cpu" and not (config.eval.perplexity or config.eval.tasks):
        # Weights are memory-mapped from their file: an LM head that never runs is never read in.
        weights -= shape.head_params * dtype_bytes
    batch_bytes = tokens_per_batch * shape.hidden * dtype_bytes
    # All batches on the device; else one batch in and one out (on disk/CPU the rest is not on the device).
    activations = (
        samples * data.seqlen * shape.hidden * dtype_bytes if config.activations == "device" else 2 * batch_bytes
    )
    statistics, solver = statistics_and_solver(config, shape, dtype_bytes)
    # gate, up and the activated product of one batch, plus attention scores if materialised (eager).
    layer_work = 3 * tokens_per_batch * shape.intermediate * dtype_bytes + batch * data.seqlen**2 * FLOAT32
    masks = (shape.n_layers * shape.layer_params) // 8 if device_kind == "cpu" else 0
    # The batch's final hidden states, and one block of logits (positions x vocabulary chunk) with
    # its float32 copy: the fused cross-entropy never holds more of the vocabulary.
    eval_seqlen = max(data.eval_seqlen, data.reference_seqlen if data.reference_sets else 0)
    hidden_states = 2 * data.eval_batch_size * eval_seqlen * shape.hidden * dtype_bytes
    block_positions = min(POSITION_CHUNK, data.eval_batch_size * eval_seqlen)
    logits = 2 * block_positions * min(VOCAB_CHUNK, shape.vocab) * FLOAT32
    evaluation = hidden_states + logits if config.eval.perplexity else 0
    runtime = CPU_RUNTIME if device_kind == "cpu" else CUDA_CONTEXT
    return MemoryEstimate(weights, activations, statistics, layer_work, solver, evaluation, runtime, device_kind, masks)


def statistics_and_solver(config: RunConfig, shape: ModelShape, dtype_bytes: int) -> tuple[int, int]:
    """Bytes of one statistics pass, and of the solve phase at its largest (module docstring)."""
    prune = config.prune
    method = prune.method
    metrics = prune.local_error_mode
    keep_gram = method.statistics == "gram" or metrics == "exact"
    groups = shape.solve_groups()
    sample = (
        min(prune.metric_tokens, config.data.calibration_samples * config.data.seqlen) if metrics == "sample" else 0
    )

    def accumulator(width: int) -> int:  # float64 Gram (or norms), plus the sampled inputs
        return (width * width if keep_gram else width) * 8 + sample * width * FLOAT32

    in_order = prune.true_sequential or prune.single_pass
    waiting = [accumulator(width) for width, _ in groups]
    statistics = max(waiting) if in_order else sum(waiting)
    solver = 0
    for index, (width, rows) in enumerate(groups):
        later = 0 if in_order else sum(waiting[index + 1 :])
        new_weights = rows * width * (dtype_bytes + 1)  # the pruned weights and their bool masks
        if method.statistics == "gram":
            work = method.solver_bytes(width, rows)
        elif keep_gram:
            work = 12 * width * width + rows * width * FLOAT32  # Gram copies; W @ G for the metrics
        else:
            work = method.solver_bytes(width, rows) + sample * rows * FLOAT32  # the solve; sampled outputs
        solver = max(solver, later + work + new_weights)
    return statistics, solver


def available_bytes(device_kind: str) -> int | None:
    """Free memory where the run works: the GPU's free memory, or the host's available RAM."""
    if device_kind == "cuda":
        return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
    try:
        import psutil
    except ImportError:
        return None
    return psutil.virtual_memory().available


def device_kind(accelerator: str) -> str:
    """'cuda' when the run's weights live on a GPU, else 'cpu'."""
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    return "cuda" if accelerator == "auto" and torch.cuda.is_available() else "cpu"


def check_fits(estimate: MemoryEstimate, processes_per_machine: int) -> None:
    """Stop with a clear message when the estimate exceeds what is free.

    On the CPU every process of a machine shares the host's RAM; on GPUs each has its own device.
    """
    free = available_bytes(estimate.device_kind)
    if free is None:
        return
    sharing = processes_per_machine if estimate.device_kind == "cpu" else 1
    needed = estimate.peak * sharing
    if needed > free:
        raise ConfigError(
            f"the run needs about {gib(needed)} of {estimate.device_kind} memory but {gib(free)} are free; "
            "try offload_layers true, activations cpu or disk, a smaller data.batch_size / eval_batch_size, "
            "bfloat16, or more devices (or check_memory false to try anyway)"
        )
