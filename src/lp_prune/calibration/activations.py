"""Where the cached layer inputs live between steps: on the compute device, in CPU memory or on disk.

Calibration keeps one hidden-state tensor per batch ([batch, seqlen, hidden]); for an 8B model with
128 x 2048 tokens that is 4 GiB in fp32, so large runs park them in CPU memory or in files and move
one batch at a time to the device.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch


class ActivationStore:
    """A list of per-batch tensors; `place` is 'device', 'cpu' or 'disk'. Reads return device tensors."""

    def __init__(self, place: str, device: torch.device, folder: Path | None = None) -> None:
        if place not in ("device", "cpu", "disk"):
            raise ValueError(f"activations must be 'device', 'cpu' or 'disk', got '{place}'")
        self.place, self.device = place, device
        self._items: list[torch.Tensor | Path] = []
        self._folder: Path | None = None
        if place == "disk":
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix="activations-", dir=folder))

    def append(self, tensor: torch.Tensor) -> None:
        self._items.append(self._park(len(self._items), tensor))

    def __setitem__(self, index: int, tensor: torch.Tensor) -> None:
        self._items[index] = self._park(index, tensor)

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self._items[index]
        if isinstance(item, Path):
            return torch.load(item, map_location=self.device, weights_only=True)
        return item.to(self.device)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[i] for i in range(len(self)))

    def _park(self, index: int, tensor: torch.Tensor) -> torch.Tensor | Path:
        if self.place == "device":
            return tensor
        if self.place == "cpu":
            return tensor.to("cpu")
        assert self._folder is not None
        path = self._folder / f"batch_{index:05d}.pt"
        torch.save(tensor.detach().cpu(), path)
        return path

    def close(self) -> None:
        """Drop the tensors and delete the files."""
        self._items.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
