"""One process at a time computes a cache entry: the others wait and read what it wrote.

Runs of a sweep (`lp-prune sweep --parallel N`) share the cache (LP_PRUNE_CACHE, ~/.cache/lp_prune):
the dense model's perplexity and downstream results, generated calibration text, the proxy and
probe task files, the converted packaged model. Each entry is computed under an exclusive lock on
`<entry>.lock` beside it (filelock's, as the Hugging Face libraries lock their caches; it opens the
file without following a link), and the cache is read again once the lock is held, so the second
process takes the first one's result instead of computing it too (the lock file stays, as in the
Hugging Face caches). The writes themselves stay atomic (temporary file, then rename): a reader
without the lock sees the old entry or the new one, never half of one. A symbolic link planted in the cache
(an entry's lock, an entry, a folder below the cache root) is refused, never followed (storage.files).

A cache folder that cannot be written costs the lock, not the run (as it costs the entry itself).
Only for work that is not collective: a data-parallel computation would deadlock if one rank waited
for the lock while the others went on without it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

from lp_prune.storage.files import checked_folder, planted_link, refuse_link

T = TypeVar("T")
LOCK_SUFFIX = ".lock"

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Where the cache lives: $LP_PRUNE_CACHE, else ~/.cache/lp_prune."""
    return Path(os.environ.get("LP_PRUNE_CACHE", Path.home() / ".cache" / "lp_prune"))


def cache_folder(folder: str | os.PathLike[str]) -> Path:
    """A folder of the cache, made where missing, with no symbolic link below the cache root (PlantedLink)."""
    return checked_folder(folder, cache_dir())


def write_to_cache(what: str, folder: Path, write: Callable[[], object]) -> None:
    """Make `folder` and call `write`. The cache only saves time: a cache that cannot be written
    (read-only, or a file in its place) costs a warning, not the run; a link planted in it is refused."""
    try:
        cache_folder(folder)
        write()
    except OSError as err:
        log.warning(
            "%s not cached: cannot write %s (%s); set LP_PRUNE_CACHE to a writable folder",
            what,
            folder,
            err.strerror or err,
        )


def lock_path(entry: str | os.PathLike[str]) -> Path:
    entry = Path(entry)
    return entry.with_name(entry.name + LOCK_SUFFIX)


@contextlib.contextmanager
def cache_lock(entry: str | os.PathLike[str], what: str = "cache entry") -> Iterator[None]:
    """Hold the exclusive lock of cache `entry` (a file or folder) for the block, waiting for another holder."""
    path = lock_path(entry)
    lock: FileLock | None = FileLock(path)
    try:
        cache_folder(path.parent)
        refuse_link(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("Waiting for another process to finish the %s %s", what, Path(entry).name)
            lock.acquire()
    except OSError as err:
        if err.errno == errno.ELOOP:  # a link planted between the check and the open
            raise planted_link(path) from None
        # a read-only cache: nothing will be written, so there is nothing to guard
        log.debug("%s %s not locked: %s", what, entry, err.strerror or err)
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def compute_once(
    entry: str | os.PathLike[str],
    read: Callable[[], T | None],
    compute: Callable[[], T],
    write: Callable[[T], object] | None,
    what: str = "cache entry",
    lock: bool = True,
) -> T:
    """`read()` of the entry if it holds one; else, under the entry's lock, `read()` again (another
    process may have written it meanwhile), or `compute()` and `write` it. With `write` None (a
    process that does not write, such as a data-parallel rank other than 0) or `lock` False (a
    collective computation), no lock: compute only."""
    found = read()
    if found is not None:
        return found
    with cache_lock(entry, what) if lock and write is not None else contextlib.nullcontext():
        found = read()
        if found is not None:
            return found
        value = compute()
        if write is not None:
            write(value)
        return value
