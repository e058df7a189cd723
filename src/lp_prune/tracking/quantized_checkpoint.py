"""The quantized model as a compressed checkpoint in compressed-tensors' "pack-quantized" format.

RUN_DIR/model-compressed/ holds the same model as model/, with every quantized Linear stored as its
integer codes, the layout llm-compressor writes for GPTQ models. For a weight [rows, cols] on a grid
of `bits` bits with `groups` (scale, zero) per row (one per row: channel strategy, else group):

    <module>.weight_packed      int32 [rows, ceil(cols * bits / 32)]  the codes, signed (q - 2^(bits-1)),
                                                                      32 codes packed densely into bits words
    <module>.weight_scale       float32 [rows, groups]
    <module>.weight_zero_point  int32 [ceil(rows * bits / 32), groups]  asymmetric only: zero - 2^(bits-1),
                                                                         packed along the rows
    <module>.weight_shape       int64 [2]

compressed-tensors dequantizes w = scale * (q_signed - zero_signed) = scale * (q - zero), the grid's own
formula; a symmetric grid (zero = 2^(bits-1)) stores no zero point, as signed zero 0. The packing is the
library's own (pack_to_int32). Every other tensor (embeddings, norms, lm_head) is stored as it is, and
config.json carries the quantization config (quant_method compressed-tensors, format pack-quantized,
one config group for the Linears, the Linears left unquantized in `ignore`).

The scale is stored in float32, as the solve computed it (compressed-tensors would make it in the
weight's dtype): scale * (q - zero) is then the solve's own product, so the decompressed weights, cast
to the model's dtype, equal model/'s bit for bit also for half-precision models (a bfloat16 scale moves
them by a unit or two of bfloat16). transformers keeps it in float32 and casts the weight it decompresses.

A grid the format cannot hold (GPTQ's act_order with groups, whose columns are scattered over the row:
compressed-tensors 0.20 has no g_idx) gives no folder and a warning.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from lp_prune.pruning.grid import QuantGrid
from lp_prune.storage.files import read_json, write_json
from lp_prune.storage.safetensors_writer import LazyTensor
from lp_prune.tracking.saved_model import DEFAULT_SHARD_SIZE, save_model_config, unique_tensors, write_weights
from lp_prune.tracking.sparsity_config import CONFIG_FILE, QUANTIZATION_CONFIG, left_dense

log = logging.getLogger(__name__)

PACK_QUANTIZED = "pack-quantized"  # compressed_tensors.config.CompressionFormat.pack_quantized


def unpackable(grids: Mapping[str, QuantGrid], targets: Iterable[str]) -> str | None:
    """Why the targets' grids cannot be stored pack-quantized; None when they can."""
    from compressed_tensors.compressors import PackedQuantizationCompressor

    targets = list(targets)
    if not targets:
        return "no Linear was quantized"
    missing = [name for name in targets if name not in grids]
    if missing:
        return f"no quantization grid was recorded for {missing[0]} (a layer replayed from older progress?)"
    chosen = [grids[name] for name in targets]
    if len({(grid.bits, grid.symmetric, grid.group_size) for grid in chosen}) > 1:
        return "the Linears' grids differ in bits, symmetry or group size; one config group holds one grid"
    if any(grid.g_idx is not None for grid in chosen):
        return (
            "act_order with group_size scatters a group's columns over the row; compressed-tensors "
            "0.20 stores no g_idx (its group activation ordering was removed)"
        )
    if not PackedQuantizationCompressor.can_compress(torch.nn.Linear, quantization_scheme(chosen[0])):
        return f"compressed-tensors' pack-quantized cannot hold {chosen[0].bits}-bit integer weights"
    return None


def quantization_scheme(grid: QuantGrid) -> Any:
    """compressed-tensors' QuantizationScheme of the Linears: their weights' grid, nothing on activations."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme

    strategy = "channel" if grid.group_size is None else "group"
    weights = QuantizationArgs(
        num_bits=grid.bits, type="int", symmetric=grid.symmetric, strategy=strategy, group_size=grid.group_size
    )
    return QuantizationScheme(targets=["Linear"], weights=weights, format=PACK_QUANTIZED)


def save_quantized_streaming(
    model: torch.nn.Module,
    folder: str | os.PathLike[str],
    grids: Mapping[str, QuantGrid],
    targets: Iterable[str],
    max_shard_size: int = DEFAULT_SHARD_SIZE,
) -> dict[str, Any] | None:
    """Save `model` with the weights of the `targets` modules (the quantized Linears) pack-quantized on
    their `grids`. Returns the quantization_config written into config.json; None (and a warning, no
    folder) when the grids cannot be stored in the format."""
    targets = list(targets)
    reason = unpackable(grids, targets)
    wanted = set(targets)
    if reason is not None:
        log.warning("no %s: %s", Path(folder).name, reason)
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = unique_tensors(model)
    missing = sorted(f"{name}.weight" for name in wanted if f"{name}.weight" not in tensors)
    if missing:
        raise ValueError(f"no weight to quantize for {', '.join(missing[:3])}")
    entries: dict[str, torch.Tensor | LazyTensor] = {}
    for name, tensor in tensors.items():
        prefix = name.removesuffix(".weight")
        if prefix in wanted and name.endswith(".weight"):
            entries.update({f"{prefix}.{part}": value for part, value in packed_parts(tensor, grids[prefix]).items()})
        else:
            entries[name] = tensor
    write_weights(folder, entries, max_shard_size)
    save_model_config(model, folder)
    block = quantization_config(grids[targets[0]], left_dense(model, wanted))
    config = read_json(folder / CONFIG_FILE)
    config[QUANTIZATION_CONFIG] = block
    write_json(folder / CONFIG_FILE, config)
    return block


def packed_parts(weight: torch.Tensor, grid: QuantGrid) -> dict[str, torch.Tensor | LazyTensor]:
    """One weight's pack-quantized tensors; the packed codes are made when the writer reaches them."""
    from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32

    rows, cols = weight.shape
    offset = 2 ** (grid.bits - 1)  # compressed-tensors' codes are signed

    def packed() -> torch.Tensor:
        codes = grid.codes(weight.detach().cpu()) - offset
        return pack_to_int32(codes.to(torch.int8), grid.bits)

    parts: dict[str, torch.Tensor | LazyTensor] = {
        "weight_packed": LazyTensor(torch.int32, (rows, math.ceil(cols * grid.bits / 32)), packed),
        "weight_scale": grid.scale.float(),  # the solve's own: its product is the weight, in any dtype
        "weight_shape": torch.tensor([rows, cols]),
    }
    if not grid.symmetric:
        parts["weight_zero_point"] = pack_to_int32((grid.zero - offset).to(torch.int8), grid.bits, packed_dim=0)
    return parts


def quantization_config(grid: QuantGrid, ignore: list[str]) -> dict[str, Any]:
    """config.json's quantization_config, as compressed-tensors' ModelCompressor.update_config writes it."""
    import compressed_tensors
    from compressed_tensors.quantization import QuantizationConfig, QuantizationStatus

    config = QuantizationConfig(
        config_groups={"group_0": quantization_scheme(grid)},
        format=PACK_QUANTIZED,
        quantization_status=QuantizationStatus.COMPRESSED,
        ignore=ignore,
    )
    return {
        "version": compressed_tensors.__version__,
        "quant_method": "compressed-tensors",
        "sparsity_config": {},
        "transform_config": {},
        **config.model_dump(exclude={"quant_method"}),
    }


def read_quantization_config(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A compressed folder's quantization_config when it is pack-quantized; None otherwise."""
    path = Path(folder) / CONFIG_FILE
    block = read_json(path).get(QUANTIZATION_CONFIG) if path.is_file() else None
    if isinstance(block, Mapping) and block.get("format") == PACK_QUANTIZED:
        return dict(block)
    return None
