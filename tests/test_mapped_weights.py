"""Handing back clean pages of memory-mapped weights: only pages that hold nothing but file contents go."""

from __future__ import annotations

import mmap
import sys

import numpy as np
import pytest
import torch

from lp_prune.runtime import PAGE, mapped_ranges, release_clean_pages, release_mapped_weights

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pagemap and madvise are Linux's")

PAGES = 64


def resident_pages(tensor: torch.Tensor) -> int:
    """Pages of the tensor's buffer mapped into this process (pagemap bit 63)."""
    start = tensor.data_ptr() // PAGE
    count = (tensor.data_ptr() + tensor.numel() * tensor.element_size() - 1) // PAGE - start + 1
    with open("/proc/self/pagemap", "rb") as pagemap:
        pagemap.seek(start * 8)
        entries = np.frombuffer(pagemap.read(count * 8), dtype=np.uint64)
    return int(((entries >> np.uint64(63)) & np.uint64(1)).sum())


@pytest.fixture
def mapped(tmp_path):
    """A float32 tensor memory-mapped copy-on-write from a *.safetensors file, as transformers loads one."""
    values = torch.arange(PAGES * PAGE // 4, dtype=torch.float32)
    path = tmp_path / "weights.safetensors"
    path.write_bytes(values.numpy().tobytes())
    return torch.from_file(str(path), shared=False, size=values.numel(), dtype=torch.float32), values


def test_read_pages_leave_and_read_back_from_the_file(mapped):
    tensor, values = mapped
    assert torch.equal(tensor, values)  # reading maps every page
    assert resident_pages(tensor) == PAGES
    released = release_mapped_weights()
    assert released >= PAGES * PAGE
    assert resident_pages(tensor) == 0
    assert torch.equal(tensor, values)  # mapped again from the file


def test_written_pages_stay_with_their_new_values(mapped):
    tensor, values = mapped
    per_page = PAGE // 4
    tensor.sum()  # read: every page mapped from the file
    tensor[: 3 * per_page] = -1.0  # private copies of the first three pages
    release_mapped_weights()
    assert resident_pages(tensor) == 3
    assert torch.all(tensor[: 3 * per_page] == -1.0)
    assert torch.equal(tensor[3 * per_page :], values[3 * per_page :])


def test_anonymous_memory_is_never_dropped():
    tensor = torch.arange(PAGES * PAGE // 4, dtype=torch.float32) + 1.0  # heap memory, not a file
    start = -(-tensor.data_ptr() // PAGE) * PAGE
    end = (tensor.data_ptr() + tensor.numel() * 4) // PAGE * PAGE
    assert release_clean_pages(start, end) == 0
    assert torch.equal(tensor, torch.arange(PAGES * PAGE // 4, dtype=torch.float32) + 1.0)


def test_only_files_with_the_suffix_count(mapped, tmp_path):
    tensor, _ = mapped
    other = tmp_path / "other.bin"
    other.write_bytes(b"\0" * PAGE * 4)
    with open(other, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ):
        ranges = mapped_ranges(".bin")
        assert ranges and all(start % PAGE == 0 for start, _ in ranges)
    ranges = mapped_ranges(".safetensors")
    assert any(start <= tensor.data_ptr() < end for start, end in ranges)
