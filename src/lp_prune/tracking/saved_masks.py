"""masks.safetensors: the run's pruning masks, bit-packed, written once and read one module at a time.

File format
-----------
- One entry per pruned module, named by the module's name (e.g. ``model.layers.0.self_attn.q_proj``).
- An entry is a 1-D ``uint8`` tensor of ``ceil(numel / 8)`` bytes: the boolean mask flattened in
  row-major (C) order, packed 8 positions per byte, least significant bit first
  (``numpy.packbits(..., bitorder="little")``): position ``i`` is bit ``i % 8`` of byte ``i // 8``.
  Bit set = position pruned (weight zeroed). Padding bits of the last byte are 0, so popcounts over
  packed bytes (AND / OR for mask IoU) need no correction.
- The safetensors metadata key ``"lp_prune.mask_shapes"`` holds a JSON object ``{name: [d0, d1, ...]}``
  with each mask's original shape, in the order the masks were saved. ``"lp_prune.format"`` is
  ``"packed-masks/1"`` and ``"lp_prune.bitorder"`` is ``"little"``.
- Unpacking with numpy alone (``safetensors.numpy.load_file`` reads the file without torch)::

      import json, numpy as np
      from safetensors import safe_open
      with safe_open("masks.safetensors", framework="np") as f:
          shapes = json.loads(f.metadata()["lp_prune.mask_shapes"])
          for name, shape in shapes.items():
              packed = f.get_tensor(name)
              mask = np.unpackbits(packed, count=int(np.prod(shape)), bitorder="little")
              mask = mask.astype(bool).reshape(shape)   # True = pruned
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from lp_prune.errors import DataError
from lp_prune.pruning.masks import MASK_BITORDER, PackedMask, packed_mask, unpack_mask
from lp_prune.storage.safetensors_writer import write_safetensors
from lp_prune.tracking.run_dir import RunDirLike, as_run_directory

MASK_SHAPES_KEY = "lp_prune.mask_shapes"
MASK_FORMAT_KEY = "lp_prune.format"
MASK_BITORDER_KEY = "lp_prune.bitorder"
MASK_FORMAT = "packed-masks/1"


def save_masks(run_dir: RunDirLike, masks: Mapping[str, torch.Tensor | PackedMask]) -> Path:
    """Write ``masks`` (name -> bool tensor with True = pruned, or a PackedMask) to ``masks.safetensors``.

    The file is byte-reproducible: `write_safetensors` keeps the given order in its header
    (safetensors' own writer orders the metadata differently in every process)."""
    path = as_run_directory(run_dir).masks
    path.parent.mkdir(parents=True, exist_ok=True)
    packed = {name: mask if isinstance(mask, PackedMask) else packed_mask(mask) for name, mask in masks.items()}
    metadata = {
        MASK_FORMAT_KEY: MASK_FORMAT,
        MASK_BITORDER_KEY: MASK_BITORDER,
        MASK_SHAPES_KEY: json.dumps({name: list(mask.shape) for name, mask in packed.items()}),
    }
    write_safetensors(path, {name: mask.bits for name, mask in packed.items()}, metadata)
    return path


def mask_names(run_dir: RunDirLike) -> list[str]:
    """Names of the saved masks, in the order they were saved."""
    with _open_masks(as_run_directory(run_dir).masks) as (_, shapes):
        return list(shapes)


def mask_shapes(run_dir: RunDirLike) -> dict[str, tuple[int, ...]]:
    """Each saved mask's shape, from the file's header alone (nothing is unpacked)."""
    with _open_masks(as_run_directory(run_dir).masks) as (_, shapes):
        return shapes


def packed_masks(
    run_dir: RunDirLike, names: Iterable[str] | None = None
) -> Iterator[tuple[str, torch.Tensor, tuple[int, ...]]]:
    """Yield ``(name, packed uint8 tensor, shape)`` one module at a time, without unpacking."""
    path = as_run_directory(run_dir).masks
    with _open_masks(path) as (handle, shapes):
        for name in _select(names, shapes, path):
            yield name, _read_packed(handle, name, shapes[name], path), shapes[name]


def iter_masks(run_dir: RunDirLike, names: Iterable[str] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, bool mask)`` one module at a time (only one mask is in memory at once)."""
    for name, packed, shape in packed_masks(run_dir, names):
        yield name, unpack_mask(packed, shape)


def load_masks(run_dir: RunDirLike, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """All masks (or only ``names``) as bool tensors, True = pruned."""
    return dict(iter_masks(run_dir, names))


@contextlib.contextmanager
def _open_masks(path: Path) -> Iterator[tuple[Any, dict[str, tuple[int, ...]]]]:
    from safetensors import safe_open

    if not path.is_file():
        raise DataError(f"mask file not found: {path}")
    try:
        handle = safe_open(path, framework="pt")
    except Exception as error:  # safetensors raises its own error types for damaged headers
        raise DataError(f"cannot read mask file {path}: {error}") from None
    with handle:
        yield handle, _mask_shapes(handle, path)


def _mask_shapes(handle: Any, path: Path) -> dict[str, tuple[int, ...]]:
    metadata = handle.metadata() or {}
    try:
        shapes = json.loads(metadata[MASK_SHAPES_KEY])
        result = {str(name): tuple(int(size) for size in shape) for name, shape in shapes.items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DataError(f"{path} is not an lp_prune mask file (no valid {MASK_SHAPES_KEY!r} metadata)") from None
    if metadata.get(MASK_BITORDER_KEY, MASK_BITORDER) != MASK_BITORDER:
        raise DataError(f"{path}: unsupported bit order {metadata[MASK_BITORDER_KEY]!r}")
    return result


def _select(names: Iterable[str] | None, shapes: Mapping[str, Any], path: Path) -> list[str]:
    if names is None:
        return list(shapes)
    selected = [names] if isinstance(names, str) else list(names)
    missing = [name for name in selected if name not in shapes]
    if missing:
        raise DataError(f"{path} has no mask named {', '.join(missing)}")
    return selected


def _read_packed(handle: Any, name: str, shape: tuple[int, ...], path: Path) -> torch.Tensor:
    try:
        packed = handle.get_tensor(name)
    except Exception as error:  # entry listed in the metadata but absent or damaged in the file
        raise DataError(f"cannot read mask {name!r} from {path}: {error}") from None
    expected = (math.prod(shape) + 7) // 8
    if packed.dtype != torch.uint8 or packed.ndim != 1 or packed.numel() != expected:
        raise DataError(
            f"{path}: mask {name!r} should be {expected} packed uint8 bytes, "
            f"found {packed.dtype} of shape {tuple(packed.shape)}"
        )
    return packed
