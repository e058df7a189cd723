"""The sparsity of a saved model in compressed-tensors' terms.

A pruned model whose weights are stored in full (model/) gets compressed-tensors' sparsity config of
format "dense" (DenseSparsityConfig: what llm-compressor wrote for a sparse model saved dense) in a
file of its own beside config.json, `sparsity_config.json`::

    {"format": "dense", "sparsity_structure": "unstructured" | "2:4" | "N:M",
     "global_sparsity": <zero fraction of the pruned weights>, "targets": ["Linear"],
     "ignore": [<Linear modules left dense, e.g. lm_head>], "registry_requires_subclass": false}

Not in config.json: there, under "quantization_config", transformers attaches a compressed-tensors
quantizer to the model it loads, which then refuses `.half()` ("not supported for quantized model")
and needs compressed-tensors installed to load at all; model/ is meant to load as a plain model. The
sparse bitmask formats (tracking.sparse_checkpoint), which need the quantizer to decompress, carry
the same block in their config.json. The config objects are compressed-tensors' own
(SparsityCompressionConfig's registry: "dense", "sparse-bitmask", "sparse-24-bitmask").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from lp_prune.config.values import parse_pattern
from lp_prune.errors import ConfigError
from lp_prune.storage.files import read_json, write_json

CONFIG_FILE = "config.json"
DENSE_SPARSITY_FILE = "sparsity_config.json"  # model/'s record, beside config.json
QUANTIZATION_CONFIG = "quantization_config"  # compressed_tensors.base.QUANTIZATION_CONFIG_NAME
SPARSITY_CONFIG = "sparsity_config"  # compressed_tensors.base.SPARSITY_CONFIG_NAME
COMPRESSED_TENSORS = "compressed-tensors"
DENSE = "dense"  # compressed_tensors.config.CompressionFormat.dense
UNSTRUCTURED = "unstructured"


def follows_pattern(weight: torch.Tensor, pattern: str) -> bool:
    """Whether `weight` is N:M sparse for an 'N:M' `pattern`: every M consecutive inputs of a row hold
    at least N zeros (False for 'unstructured' or a weight whose rows do not split into groups of M)."""
    try:
        n_m = parse_pattern(pattern)
    except ConfigError:
        return False
    if n_m is None or weight.dim() != 2 or weight.shape[1] % n_m[1]:
        return False
    n, m = n_m
    kept = (weight != 0).reshape(weight.shape[0], -1, m).sum(-1)
    return bool((kept <= m - n).all())


def sparsity_structure(weights: Iterable[torch.Tensor], pattern: str) -> str:
    """compressed-tensors' sparsity_structure: "K:M" (at most K of every M kept, its notation; lp_prune's
    pattern N:M prunes N, so 2:4 is 2:4 and 1:4 is 3:4) when every weight follows `pattern`, else
    unstructured."""
    n_m = None if pattern == UNSTRUCTURED else parse_pattern(pattern)
    if n_m is None or not all(follows_pattern(weight, pattern) for weight in weights):
        return UNSTRUCTURED
    n, m = n_m
    return f"{m - n}:{m}"


def target_weights(model: torch.nn.Module, targets: Iterable[str]) -> dict[str, torch.Tensor]:
    """The weight of every target module (the pruned Linears), by module name."""
    targets = list(targets)
    modules = dict(model.named_modules())
    missing = [name for name in targets if name not in modules or getattr(modules[name], "weight", None) is None]
    if missing:
        raise ValueError(f"no weight for {', '.join(missing[:3])}")
    return {name: modules[name].weight.detach() for name in targets}


def zero_fraction(weights: Iterable[torch.Tensor]) -> float:
    zeros = total = 0
    for weight in weights:
        total += weight.numel()
        zeros += weight.numel() - int(torch.count_nonzero(weight))
    return zeros / total if total else 0.0


def left_dense(model: torch.nn.Module, targets: set[str]) -> list[str]:
    """Modules of the targets' classes that were not pruned (lm_head): compressed-tensors' `ignore`."""
    classes = {type(module) for name, module in model.named_modules() if name in targets}
    return [name for name, module in model.named_modules() if type(module) in classes and name not in targets]


def sparsity_config(form: str, model: torch.nn.Module, targets: Iterable[str], structure: str) -> dict[str, Any]:
    """compressed-tensors' sparsity config of format `form` for the `targets` of `model`, as a dict."""
    from compressed_tensors.config import SparsityCompressionConfig

    targets = set(targets)
    config = SparsityCompressionConfig.load_from_registry(
        form,
        global_sparsity=zero_fraction(target_weights(model, targets).values()),
        sparsity_structure=structure,
        targets=sorted({type(module).__name__ for name, module in model.named_modules() if name in targets}),
        ignore=left_dense(model, targets),
    )
    return config.model_dump()


def quantization_config(sparsity: Mapping[str, Any]) -> dict[str, Any]:
    """config.json's quantization_config block holding a sparsity config and nothing quantized."""
    import compressed_tensors

    version = compressed_tensors.__version__
    return {"quant_method": COMPRESSED_TENSORS, "version": version, SPARSITY_CONFIG: dict(sparsity)}


def write_quantization_config(folder: str | os.PathLike[str], block: Mapping[str, Any]) -> None:
    """`block` as the quantization_config of the folder's config.json."""
    path = Path(folder) / CONFIG_FILE
    config = read_json(path)
    config[QUANTIZATION_CONFIG] = dict(block)
    write_json(path, config)


def record_dense_sparsity(
    model: torch.nn.Module, folder: str | os.PathLike[str], targets: Iterable[str], pattern: str
) -> dict[str, Any]:
    """Record in the folder's sparsity_config.json that the `targets` of the model saved there are
    sparse and stored dense; the structure is `pattern` when every target weight follows it, else
    unstructured. Returns the sparsity config written."""
    targets = list(targets)
    structure = sparsity_structure(target_weights(model, targets).values(), pattern)
    sparsity = sparsity_config(DENSE, model, targets, structure)
    write_json(Path(folder) / DENSE_SPARSITY_FILE, sparsity)
    return sparsity


def drop_sparsity_record(folder: str | os.PathLike[str]) -> None:
    """Remove a quantization_config that quantizes nothing (what transformers writes back for a model it
    loaded with a sparsity record: {"quant_method": "compressed-tensors"}), so that a model pruned again
    does not keep the record of its input."""
    path = Path(folder) / CONFIG_FILE
    config = read_json(path)
    block = config.get(QUANTIZATION_CONFIG)
    quantizes_nothing = isinstance(block, Mapping) and not block.get("config_groups")
    if quantizes_nothing and block.get("quant_method") == COMPRESSED_TENSORS:
        del config[QUANTIZATION_CONFIG]
        write_json(path, config)


def read_dense_sparsity(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sparsity config of a folder saved dense (format "dense"); None when it records none."""
    path = Path(folder) / DENSE_SPARSITY_FILE
    sparsity = read_json(path) if path.is_file() else None
    if isinstance(sparsity, Mapping) and sparsity.get("format") == DENSE:
        return dict(sparsity)
    return None
