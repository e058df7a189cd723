"""The pruned model as a compressed sparse checkpoint in compressed-tensors' bitmask formats, and back.

With `save_compressed: sparse-bitmask`, RUN_DIR/model-compressed/ holds the same model as model/, with
every pruned Linear's weight stored compressed the way llm-compressor used to store a sparse model
(compressed-tensors' "sparse-bitmask" and "sparse-24-bitmask" formats); every other tensor
(embeddings, norms, lm_head) is stored as it is. For a pruned weight `<module>.weight` of shape
[rows, cols]:

    sparse-bitmask (unstructured):
        <module>.shape        int64 [2]              the dense shape
        <module>.compressed   weight dtype [nnz]     the nonzero values, row by row
        <module>.bitmask      uint8 [rows, cols/8]   one bit per weight, 1 where it is kept (little-endian bits)
        <module>.row_offsets  int64 [rows]           where each row's values start in `compressed`
    sparse-24-bitmask (every group of 4 consecutive inputs of a row holds at most 2 nonzeros):
        <module>.shape        int64 [2, 1]
        <module>.compressed   weight dtype [rows, cols/2]  exactly 2 values per group of 4 (the 2 largest |w|)
        <module>.bitmask      uint8 [rows, cols/8]

config.json carries the sparsity config (tracking.sparsity_config) with format "sparse-bitmask" or
"sparse-24-bitmask". No current reader decompresses these formats: compressed-tensors 0.15 and later
ship neither the compressors nor a loader for them, and transformers 5 reads such a folder as a
plain model with the pruned Linears missing, which it initialises at random. So that nothing loads
the folder silently wrong, its weights are named sparse-bitmask.safetensors (shards
sparse-bitmask-0000k-of-0000n.safetensors with sparse-bitmask.safetensors.index.json), names
from_pretrained does not look for: it refuses the folder with an OSError. `load_compressed_model`
reads it (and folders of the older layout, whose weights were named model*.safetensors).

The bit packing and the config objects are compressed-tensors' own (pack_bitmasks / unpack_bitmasks,
BitmaskConfig / Sparse24BitMaskConfig). The layout is produced here one weight at a time: a weight's
compressed tensors are made when the writer reaches them, and the process never holds a second copy
of the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from lp_prune.errors import DataError
from lp_prune.runtime import trim_heap
from lp_prune.storage.files import read_json
from lp_prune.storage.safetensors_writer import LazyTensor
from lp_prune.tracking.saved_model import (
    DEFAULT_SHARD_SIZE,
    MODEL_STEM,
    save_model_config,
    unique_tensors,
    weight_files,
    write_weights,
)
from lp_prune.tracking.sparsity_config import (
    CONFIG_FILE,
    QUANTIZATION_CONFIG,
    SPARSITY_CONFIG,
    UNSTRUCTURED,
    quantization_config,
    sparsity_config,
    write_quantization_config,
)

SPARSE_BITMASK = "sparse-bitmask"  # the save_compressed value, and the stem of the weight files
TWO_FOUR = "2:4"
_PARTS = ("shape", "compressed", "bitmask", "row_offsets")


def is_two_four(weight: torch.Tensor) -> bool:
    """Whether every group of 4 consecutive inputs in every row holds at most 2 nonzeros."""
    if weight.dim() != 2 or weight.shape[1] % 4:
        return False
    kept = (weight != 0).reshape(weight.shape[0], -1, 4).sum(-1)
    return bool((kept <= 2).all())


def save_compressed_streaming(
    model: torch.nn.Module,
    folder: str | os.PathLike[str],
    targets: Iterable[str],
    pattern: str = UNSTRUCTURED,
    max_shard_size: int = DEFAULT_SHARD_SIZE,
) -> dict[str, Any]:
    """Save `model` with the weights of the `targets` modules (the pruned Linears) compressed.

    The format is sparse-24-bitmask when `pattern` is "2:4" and every target weight is 2:4 sparse,
    else sparse-bitmask. Shards and index follow save_model_streaming's layout under the stem
    sparse-bitmask. Returns the quantization_config block written into config.json.
    """
    from compressed_tensors.config import CompressionFormat

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets = set(targets)
    tensors = unique_tensors(model)
    target_weights = {f"{name}.weight" for name in targets}
    missing = sorted(target_weights - set(tensors))
    if missing:
        raise ValueError(f"no weight to compress for {', '.join(missing[:3])}")
    weights = [tensors[name] for name in tensors if name in target_weights]
    structure = TWO_FOUR if pattern == TWO_FOUR and all(is_two_four(w) for w in weights) else UNSTRUCTURED
    entries: dict[str, torch.Tensor | LazyTensor] = {}
    for name, tensor in tensors.items():
        if name not in target_weights:
            entries[name] = tensor
            continue
        prefix = name.removesuffix(".weight")
        parts = _two_four_parts(tensor) if structure == TWO_FOUR else _bitmask_parts(tensor)
        entries.update({f"{prefix}.{part}": value for part, value in parts.items()})
        trim_heap()  # the masks counted here go back to the OS before the next weight's
    write_weights(folder, entries, max_shard_size, stem=SPARSE_BITMASK)
    save_model_config(model, folder)
    form = CompressionFormat.sparse_24_bitmask if structure == TWO_FOUR else CompressionFormat.sparse_bitmask
    block = quantization_config(sparsity_config(form.value, model, targets, structure))
    write_quantization_config(folder, block)
    return block


def _bitmask_parts(weight: torch.Tensor) -> dict[str, torch.Tensor | LazyTensor]:
    from compressed_tensors.utils import pack_bitmasks

    if weight.dim() != 2:
        raise ValueError(f"only 2-d weights are bitmask-compressed, got shape {list(weight.shape)}")
    rows, cols = weight.shape
    counts = (weight != 0).sum(dim=-1)
    return {
        "shape": torch.tensor([rows, cols]),
        "compressed": LazyTensor(weight.dtype, (int(counts.sum()),), lambda: _cpu(weight)[_cpu(weight) != 0]),
        "bitmask": LazyTensor(torch.uint8, (rows, -(-cols // 8)), lambda: pack_bitmasks(_cpu(weight) != 0)),
        "row_offsets": torch.cumsum(counts, 0) - counts,
    }


def _two_four_parts(weight: torch.Tensor) -> dict[str, torch.Tensor | LazyTensor]:
    from compressed_tensors.utils import pack_bitmasks

    rows, cols = weight.shape
    return {
        "shape": torch.tensor([rows, cols]).reshape(-1, 1),
        "compressed": LazyTensor(
            weight.dtype, (rows, cols // 2), lambda: _cpu(weight)[_two_of_four(weight)].reshape(rows, cols // 2)
        ),
        "bitmask": LazyTensor(torch.uint8, (rows, -(-cols // 8)), lambda: pack_bitmasks(_two_of_four(weight))),
    }


def _two_of_four(weight: torch.Tensor) -> torch.Tensor:
    """The sparse-24-bitmask mask: in every group of 4, the 2 entries of largest |w| (a group with fewer
    than 2 nonzeros stores some of its zeros, as compressed-tensors does)."""
    weight = _cpu(weight)
    groups = weight.reshape(-1, 4)
    mask = torch.zeros(groups.shape, dtype=torch.bool)
    mask.scatter_(1, groups.abs().topk(2, dim=1).indices, True)
    return mask.reshape(weight.shape)


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu()


def read_sparsity_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The sparsity_config of a compressed folder's config.json; a DataError when it has none."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{folder} has no {CONFIG_FILE}")
    block = read_json(path).get(QUANTIZATION_CONFIG)
    sparsity = block.get(SPARSITY_CONFIG) if isinstance(block, Mapping) else None
    if not isinstance(sparsity, Mapping) or not sparsity.get("format"):
        raise DataError(f"{path} carries no compressed-tensors sparsity_config: not a compressed sparse checkpoint")
    return dict(sparsity)


def iter_decompressed(folder: str | os.PathLike[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """The dense state dict of a compressed folder, one tensor at a time: every `<module>.shape` group
    becomes `<module>.weight` again; every other tensor is read as stored."""
    from compressed_tensors.config import CompressionFormat
    from safetensors import safe_open

    form = read_sparsity_config(folder)["format"]
    known = (CompressionFormat.sparse_bitmask.value, CompressionFormat.sparse_24_bitmask.value)
    if form not in known:
        raise DataError(f"{folder}: sparsity format '{form}' is not one of {', '.join(known)}")
    with ExitStack() as stack:
        handles = [stack.enter_context(safe_open(file, framework="pt")) for file in compressed_files(folder)]
        where = {name: handle for handle in handles for name in list(handle.keys())}  # parts may span shards
        compressed = {name.removesuffix(".shape") for name in where if name.endswith(".shape")}
        for name, handle in where.items():
            prefix, _, part = name.rpartition(".")
            if prefix not in compressed or part not in _PARTS:
                yield name, handle.get_tensor(name)
            elif part == "shape":
                names = {p: f"{prefix}.{p}" for p in _PARTS if f"{prefix}.{p}" in where}
                stored = {p: where[full].get_tensor(full) for p, full in names.items()}
                yield f"{prefix}.weight", _decompress(prefix, stored, form)


def compressed_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The weight files of a compressed folder: sparse-bitmask*.safetensors, or model*.safetensors in a
    folder of the older layout."""
    try:
        return weight_files(folder, SPARSE_BITMASK)
    except DataError:
        return weight_files(folder, MODEL_STEM)


def load_decompressed(folder: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor of a compressed folder as the dense model stores it (`<module>.weight`, ...)."""
    return dict(iter_decompressed(folder))


def _decompress(prefix: str, stored: Mapping[str, torch.Tensor], form: str) -> torch.Tensor:
    from compressed_tensors.utils import unpack_bitmasks

    missing = [p for p in _PARTS[:3] if p not in stored]
    if missing:
        raise DataError(f"{prefix}: the compressed weight lacks {', '.join(missing)} ")
    shape = [int(size) for size in stored["shape"].flatten()]
    kept = unpack_bitmasks(stored["bitmask"], shape)
    values = stored["compressed"].flatten()
    if int(kept.sum()) != values.numel():
        raise DataError(f"{prefix}: its bitmask keeps {int(kept.sum())} weights but {values.numel()} values are stored")
    if "row_offsets" in stored:
        counts = kept.sum(dim=-1)
        if not torch.equal(stored["row_offsets"], torch.cumsum(counts, 0) - counts):
            raise DataError(f"{prefix}: its row_offsets do not match its bitmask ({form})")
    dense = torch.zeros(shape, dtype=values.dtype)
    dense[kept] = values
    return dense


def load_compressed_model(folder: str | os.PathLike[str]) -> torch.nn.Module:
    """The causal LM of a compressed folder, decompressed: its architecture from config.json (without the
    sparsity config) and its dense weights from `iter_decompressed`. transformers' own from_pretrained
    does not decompress the sparse bitmask formats and refuses the folder (see the module's doc)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    read_sparsity_config(folder)  # a DataError for a folder that is not compressed
    config = AutoConfig.from_pretrained(folder)
    if hasattr(config, QUANTIZATION_CONFIG):
        delattr(config, QUANTIZATION_CONFIG)
    weights = load_decompressed(folder)
    dtype = next((t.dtype for t in weights.values() if t.is_floating_point()), torch.float32)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {name for name in missing if _is_tied(model, name, weights)}
    if unexpected or set(missing) - tied:
        raise DataError(
            f"{folder}: its weights do not fit its config (missing {sorted(set(missing) - tied)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]})"
        )
    return model.eval()


def _is_tied(model: torch.nn.Module, name: str, weights: Mapping[str, torch.Tensor]) -> bool:
    """Whether parameter `name` shares its storage with one the checkpoint holds (tied embeddings)."""
    params = dict(model.named_parameters(remove_duplicate=False))
    if name not in params:
        return False
    pointer = params[name].data_ptr()
    return any(params[other].data_ptr() == pointer for other in weights if other in params and other != name)
