"""Machine-specific tuning, in one place: each piece with the measurement that justified it.

The maths (`pruning/`) and the loop (`calibration/`) stay free of it; the loop calls these.

- `single_thread()`: SparseGPT's column loop runs many tiny ops; on a busy 2-core CPU they ran 4-9x
  faster on one thread than on two (thread hand-offs cost more than the work). The pruner passes
  it to `sparsegpt_prune` as the column-loop context; the block matmuls outside it keep all threads.
- `factor_threads()`: MKL's Cholesky factorisation and triangular solve round differently with 1
  and 2 threads (matmuls do not: checked bitwise at d = 2048), and SparseGPT amplifies that: two
  data-parallel processes of one thread each gave masks with IoU 0.958 against one process of two
  threads on Gemma-3-270M. Factorising with the machine's thread count in every process makes the
  result independent of how many processes share the machine.
- `release_memory()`: gc + glibc `malloc_trim`. The solves' freed temporaries sit between the kept
  pruned weights on the heap; trimming after the pruning step lowered the default job's peak RSS
  from 2,459 MB to 2,253 MB. Also called once the tokenizer is released (a 262k-vocabulary tokenizer
  holds ~0.3 GB). The layer loop trims (`trim_heap()`; not gc, which costs ~100 ms) after each
  statistics pass and after each layer: without it the peak of one pruning job varied by hundreds
  of MB from run to run with where the allocator placed each layer's temporaries (small tensors
  kept between them, such as the metrics' token sample, keep the heap from shrinking). Wanda on the
  default model (64 x 256 tokens, medians of three runs): 1,731 MB untrimmed (1,683-1,817), 1,490 MB
  trimming after each layer only (1,395-1,510), 1,321 MB (1,129-1,414) trimming after each pass as
  well, 0.65 of llm-compressor's peak; SparseGPT 1,222 MB (0.61); prune times unchanged within their
  spread.
- `release_mapped_weights()`: transformers 5 loads safetensors memory-mapped, copy-on-write: a
  weight costs resident memory only once its pages are touched, and a page that was only read stays
  a clean copy of the file. Looking up a few thousand tokens maps most of an embedding table (the
  kernel maps pages around each fault; Gemma-3-270M: ~0.6 GB of its 0.67 GB table), and writing the
  pruned model reads every weight once more. Such clean pages can leave the process at no risk
  (madvise MADV_DONTNEED): the next read maps them from the file again. Pages the process wrote
  (private copy-on-write copies) are never dropped: /proc/self/pagemap tells the two apart. Linux
  only; a no-op elsewhere. With it, Wanda's peak on the default model went from 1,808 MB to
  1,233-1,292 MB. Call it between forward passes, not while another thread writes weights.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import mmap
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch ops on `count` threads inside the block, then restore the previous count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def single_thread() -> contextlib.AbstractContextManager[None]:
    """One thread (SparseGPT's column loop; see the module docstring)."""
    return torch_threads(1)


def machine_threads() -> int:
    """The CPUs this process may run on: one process alone on the machine would use them all."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def factor_threads() -> contextlib.AbstractContextManager[None]:
    """The machine's thread count, however many processes share the machine (the module docstring)."""
    return torch_threads(machine_threads())


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so the peak stays low."""
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim). Tensors below glibc's mmap threshold
    (which grows to 32 MB as big blocks are freed) come from the heap, and a heap that is not trimmed
    keeps their pages: saving a 190M-parameter fp32 model (730 MB) compressed, one weight at a time, raised
    the peak resident set by 215 MB untrimmed and by 47 MB trimmed after each weight (one weight's
    values and masks)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the process reuses freed memory anyway
        ctypes.CDLL("libc.so.6").malloc_trim(0)


PAGE = mmap.PAGESIZE
MADV_DONTNEED = 4
_PRESENT, _SWAPPED, _FILE_OR_SHARED = 1 << 63, 1 << 62, 1 << 61  # /proc/<pid>/pagemap entry bits


def release_mapped_weights(suffix: str = ".safetensors") -> int:
    """Drop the clean pages of every mapped `*suffix` file from this process; bytes released."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        return sum(release_clean_pages(start, end) for start, end in mapped_ranges(suffix))
    except OSError:  # no /proc (sandboxes) or no madvise: keep the pages, nothing is lost
        return 0


def mapped_ranges(suffix: str) -> list[tuple[int, int]]:
    """Address ranges [start, end) of this process's mappings of files whose name ends with `suffix`."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].endswith(suffix):
            start, end = (int(address, 16) for address in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


def release_clean_pages(start: int, end: int) -> int:
    """MADV_DONTNEED every page of [start, end) that holds nothing but file contents; bytes released.

    A page may go when it is present and file-backed (only read) or absent and not swapped out
    (never touched). A present anonymous page is a private copy the process wrote: it stays.
    """
    first, count = start // PAGE, (end - start) // PAGE
    with open("/proc/self/pagemap", "rb") as pagemap:
        pagemap.seek(first * 8)
        entries = np.frombuffer(pagemap.read(count * 8), dtype=np.uint64)
    present = (entries & np.uint64(_PRESENT)) != 0
    clean = np.where(present, (entries & np.uint64(_FILE_OR_SHARED)) != 0, (entries & np.uint64(_SWAPPED)) == 0)
    released = 0
    for run_start, run_end in _runs(clean):
        mapped = int(present[run_start:run_end].sum())
        if mapped:  # nothing to gain where no page is mapped
            _madvise_dontneed((first + run_start) * PAGE, (run_end - run_start) * PAGE)
            released += mapped * PAGE
    return released


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the runs of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.view(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _madvise_dontneed(address: int, length: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    if libc.madvise(address, length, MADV_DONTNEED) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_DONTNEED) failed")
