"""Memory a run will need per process, estimated from the model's config before any weights load.

Peak = weights held on the device + the larger of the calibration working set (cached layer inputs,
statistics, one batch through one layer, the solver's float32 workspace) and the evaluation working
set (one evaluation batch's logits). The terms follow what the code keeps alive; they are upper-ish
estimates, not measurements (the README lists measured peaks beside them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, PretrainedConfig

from lp_prune.config import RunConfig
from lp_prune.errors import ConfigError

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
FLOAT32 = 4
CPU_RUNTIME = int(0.9 * GIB)  # python, torch, transformers, lightning, tokenizer, text: 0.90 GiB RSS measured
CUDA_CONTEXT = int(0.5 * GIB)


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

    @classmethod
    def from_config(cls, config: PretrainedConfig) -> ModelShape:
        """Exact parameter counts from a model built on the meta device (no memory, no download)."""
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        from lp_prune.models.layers import decoder_layers  # the one place that knows architectures

        layers = decoder_layers(model)
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        return cls(
            total_params=sum(p.numel() for p in model.parameters()),
            layer_params=max(sum(p.numel() for p in layer.parameters()) for layer in layers),
            n_layers=len(layers),
            hidden=text.hidden_size,
            intermediate=text.intermediate_size,
            attention_width=heads * head_dim,
            vocab=text.vocab_size,
        )


@dataclass
class MemoryEstimate:
    """Bytes per process, by what holds them."""

    weights: int
    activations: int
    statistics: int
    layer_work: int
    solver: int
    evaluation: int
    runtime: int  # libraries and tokenizer in host memory, or the CUDA context
    device_kind: str  # where the weights and working sets live: "cpu" or "cuda"

    @property
    def calibration(self) -> int:
        return self.activations + self.statistics + self.layer_work + self.solver

    @property
    def peak(self) -> int:
        return self.runtime + self.weights + max(self.calibration, self.evaluation)

    def table(self, processes: int = 1) -> str:
        rows = [
            ("model weights", self.weights),
            ("cached layer inputs", self.activations),
            ("statistics (X^T X, float32)", self.statistics),
            ("one batch through one layer", self.layer_work),
            ("solver workspace (float32)", self.solver),
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
    batch_bytes = tokens_per_batch * shape.hidden * dtype_bytes
    # All batches on the device; else one batch in and one out (on disk/CPU the rest is not on the device).
    activations = (
        samples * data.seqlen * shape.hidden * dtype_bytes if config.activations == "device" else 2 * batch_bytes
    )
    inputs = (shape.hidden, shape.hidden, shape.hidden, shape.attention_width, shape.hidden, shape.hidden)
    grams = [d * d for d in inputs] + [shape.intermediate**2]  # q k v o gate up down: one accumulator each
    in_order = config.prune.true_sequential or config.prune.single_pass
    statistics = (max(grams) if in_order else sum(grams)) * FLOAT32
    # gate, up and the activated product of one batch, plus attention scores if materialised (eager).
    layer_work = 3 * tokens_per_batch * shape.intermediate * dtype_bytes + batch * data.seqlen**2 * FLOAT32
    # The layer's dense weights (kept for the error metrics), and for the widest Linear (down_proj)
    # W, H and H's two Cholesky factors in float32.
    widest = shape.intermediate
    solver = shape.layer_params * dtype_bytes + (shape.hidden * widest + 3 * widest * widest) * FLOAT32
    # Logits, their float32 copy and log-softmax: three vocabulary-wide tensors per evaluation token.
    logits = 3 * data.eval_batch_size * data.eval_seqlen * shape.vocab * FLOAT32
    evaluation = logits if config.eval.perplexity else 0
    runtime = CPU_RUNTIME if device_kind == "cpu" else CUDA_CONTEXT
    return MemoryEstimate(weights, activations, statistics, layer_work, solver, evaluation, runtime, device_kind)


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
