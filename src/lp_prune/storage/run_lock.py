"""One run at a time in a run directory: an exclusive lock held while a run works in it.

The lock is `flock` on `RUN_DIR/.lp_prune.lock`, which names its holder (pid, host, start time). The
kernel drops a flock when its process dies, however it dies, so a lock left by a killed run is
recognised as stale by simply being free: the next run takes it over and says whose it was. The file
is removed on release; a second process that opened it just before is caught by comparing the
inode it locked with the one the path names now (then it tries again). Hand-written rather than
filelock's (which the cache uses): a busy run directory's error names the process that holds it, and
a stale lock taken over says whose it was; filelock writes nothing into its lock file.
A symbolic link in the lock file's place is never followed: it is refused (storage.files.PlantedLink).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from lp_prune.errors import UserError
from lp_prune.storage.files import open_no_follow

LOCK_FILE = ".lp_prune.lock"

log = logging.getLogger(__name__)


class RunDirectoryBusy(UserError):
    """Another live process holds the run directory's lock."""


class RunLock:
    """`with RunLock(folder):` holds `folder`'s lock for the block, or raises RunDirectoryBusy at once."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            fd = lock_file(self.path, wait=False)
        except BlockingIOError:
            raise RunDirectoryBusy(
                f"run directory {self.folder} is in use by {describe_holder(self.path)}; "
                "wait for it to finish or choose another --out"
            ) from None
        previous = _read_holder(fd)
        if previous:
            log.warning("%s: took over a stale lock of %s (no longer running)", self.folder, _holder_text(previous))
        _write_holder(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        unlock_file(self.path, self._fd)
        self._fd = None


def lock_file(path: Path, wait: bool) -> int:
    """An open descriptor of `path` (created if missing) holding its exclusive flock. `wait`: block
    until the holder lets go; else BlockingIOError at once. A file its holder removed just as it was
    opened here is dropped and the new one locked instead. A link in its place: PlantedLink."""
    while True:
        fd = open_no_follow(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)  # the holder removed the file as we opened it: lock the new one


def unlock_file(path: Path, fd: int) -> None:
    """Let go of lock_file's lock, removing the file while still held, so nobody locks a file about to vanish."""
    path.unlink(missing_ok=True)
    os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.lstat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> dict[str, object] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        holder = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


def _write_holder(fd: int) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(holder).encode())


def describe_holder(path: Path) -> str:
    """'pid 123 on host h since 2026-12-02 10:00:00', or 'another process' when the file says nothing."""
    try:
        fd = open_no_follow(path, os.O_RDONLY)
    except (OSError, UserError):
        return "another process"
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(4096)
    try:
        holder = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "another process"
    return _holder_text(holder) if isinstance(holder, dict) else "another process"


def _holder_text(holder: dict[str, object]) -> str:
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {holder.get('since', '?')}"
