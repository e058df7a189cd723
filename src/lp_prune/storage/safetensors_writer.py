"""safetensors files written tensor by tensor, straight from each tensor's own buffer.

The header keeps the order it is given (safetensors' own writer orders the metadata differently in
every process), so the same tensors always give the same bytes. No tensor is copied into a bytes
object first, and pages of weights still mapped from a loaded file are handed back as they go out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lp_prune.runtime import release_mapped_weights, trim_heap
from lp_prune.storage.files import atomic_output

SAVE_CHUNK = 64 << 20  # bytes written between two hand-backs of mapped weight pages

SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


@dataclass(frozen=True)
class LazyTensor:
    """A tensor made only when its bytes are written: its dtype and shape go into the header first, so
    a file of derived tensors (a compressed weight) never holds more than one of them in memory."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    make: Callable[[], torch.Tensor]

    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    def element_size(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    def materialize(self) -> torch.Tensor:
        tensor = self.make()
        if tensor.dtype != self.dtype or tuple(tensor.shape) != self.shape:
            raise RuntimeError(
                f"a lazy tensor promised {self.dtype} {list(self.shape)} and made {tensor.dtype} {list(tensor.shape)}"
            )
        return tensor


def nbytes(tensor: torch.Tensor | LazyTensor) -> int:
    return tensor.numel() * tensor.element_size()


def write_safetensors(
    path: Path, tensors: Mapping[str, torch.Tensor | LazyTensor], metadata: Mapping[str, str] | None = None
) -> None:
    """One safetensors file, atomically: the header, then each tensor's bytes straight from its buffer.
    A LazyTensor is made when its turn comes, and let go once written."""
    header: dict[str, Any] = {"__metadata__": dict(metadata) if metadata is not None else {"format": "pt"}}
    offset = 0
    for name, tensor in tensors.items():
        size = nbytes(tensor)
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with atomic_output(path) as tmp, open(tmp, "wb") as out:
        out.write(len(encoded).to_bytes(8, "little"))
        out.write(encoded)
        unreleased = 0
        for value in tensors.values():
            tensor = value.materialize() if isinstance(value, LazyTensor) else value
            data = memoryview(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # no copy
            for chunk in range(0, len(data), SAVE_CHUNK):
                out.write(data[chunk : chunk + SAVE_CHUNK])
                unreleased += min(SAVE_CHUNK, len(data) - chunk)
                if unreleased >= SAVE_CHUNK:  # weights read from their mapped file leave again
                    release_mapped_weights()
                    unreleased = 0
            del tensor, data  # a made tensor goes before the next one is made
            if isinstance(value, LazyTensor):
                trim_heap()  # and its pages with it (runtime.trim_heap)
