"""Files written safely: atomic replacement with the mode a plain open() gives, never through a
symbolic link, and JSON in and out.

Every file is written atomically (temporary file in the same folder, fsync, ``os.replace``), so a
reader sees either the old file or the new one, never a half-written one. The file ends with the mode a
plain ``open()`` would give it (0666 less the umask), so colleagues on shared storage can read runs.

Run folders and cache entries come from colleagues and shared disks, so a link planted in one must not
turn a write into a write somewhere else: every file written, replaced or deleted there, and every
folder on the way to it below the run folder or cache root, is refused when it is a symbolic link
(`PlantedLink`, one line naming it). The root itself is the user's choice of place and may be a link.
`checked_folder` makes and checks the folders, `atomic_output` refuses a link in the file's place,
`open_no_follow` opens without following one (lock files), `staged_into` lets a library's
``save_pretrained`` write into a private folder whose files are then moved in the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lp_prune.errors import DataError, UserError


class PlantedLink(UserError):
    """A symbolic link where lp_prune would write, replace or delete inside a run folder or the cache."""


def planted_link(path: str | os.PathLike[str]) -> PlantedLink:
    try:
        target = f" to {os.readlink(path)}"
    except OSError:
        target = ""
    return PlantedLink(
        f"{path} is a symbolic link{target}; lp_prune never writes, replaces or deletes through a link in a "
        "run folder or the cache: nothing was written there (remove the link, or use another folder)"
    )


def refuse_link(path: str | os.PathLike[str]) -> None:
    """PlantedLink when `path` itself is a symbolic link (a dangling one included)."""
    if os.path.islink(path):
        raise planted_link(path)


def checked_folder(folder: str | os.PathLike[str], root: str | os.PathLike[str], make: bool = True) -> Path:
    """`folder`, made where missing, with no symbolic link at any step below `root` (PlantedLink
    naming the first). `root` itself is made but not checked: where it lies is the user's choice.
    A folder that does not lie inside `root` is made as it is. `make` False: only checked, for a
    folder that a writer makes later if at all."""
    folder, root = Path(folder), Path(root)
    try:
        steps = Path(os.path.abspath(folder)).relative_to(os.path.abspath(root)).parts
    except ValueError:
        if make:
            folder.mkdir(parents=True, exist_ok=True)
        return folder
    if make:
        root.mkdir(parents=True, exist_ok=True)
    current = root
    for step in steps:
        current = current / step
        refuse_link(current)
        if make:
            current.mkdir(exist_ok=True)
            refuse_link(current)  # made meanwhile by another process: checked again
    return folder


def open_no_follow(path: str | os.PathLike[str], flags: int, mode: int = 0o666) -> int:
    """os.open that never follows a symbolic link in the file's place (O_NOFOLLOW): PlantedLink instead."""
    refuse_link(path)
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), mode)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
            raise planted_link(path) from None
        raise


@contextlib.contextmanager
def staged_into(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """A private empty folder inside `folder` for a library that writes files with plain open()
    (save_pretrained); on success each file it wrote is fsynced and moved into `folder`, a link in
    its place refused. The staging folder is gone afterwards either way."""
    folder = Path(folder)
    staging = Path(tempfile.mkdtemp(prefix=".staging.", suffix=".tmp", dir=folder))
    try:
        yield staging
        _move_into(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _fsync_dir(folder)


def _move_into(source: Path, target: Path) -> None:
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink():
            _move_into(entry, checked_folder(destination, target))
            continue
        refuse_link(destination)
        if not entry.is_symlink():
            _fsync_file(entry)
        os.replace(entry, destination)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a folder lp_prune wrote, with everything in it; a symbolic link in its place is removed
    itself, never what it points to (shutil.rmtree removes links inside as links)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def copy_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """`source`'s content into `target`, atomically and never through a link in `target`'s place."""
    with atomic_output(target) as tmp:
        shutil.copyfile(source, tmp)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, fsync it and move it onto ``path``.

    If the body raises, the temporary file is removed and ``path`` keeps its old content. A symbolic
    link in ``path``'s place is refused (PlantedLink); the folder it lies in is the caller's to check
    (checked_folder).
    """
    target = Path(path)
    refuse_link(target)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, new_file_mode())  # mkstemp makes 0600; the body may also have replaced the file
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 less the process umask."""
    return 0o666 & ~current_umask()


def new_folder_mode() -> int:
    """The mode ``mkdir`` gives a new folder: 0777 less the process umask."""
    return 0o777 & ~current_umask()


_umask_lock = threading.Lock()
_umask_fallback: int | None = None


def current_umask() -> int:
    """The process umask, read without changing it where the system tells (Linux: /proc/self/status).

    Elsewhere the only way is os.umask(x), which sets it for the whole process: that is done once
    (under a lock, restored at once) and the value is kept.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    global _umask_fallback
    with _umask_lock:
        if _umask_fallback is None:
            _umask_fallback = os.umask(0o022)
            os.umask(_umask_fallback)
        return _umask_fallback


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; directories cannot be opened this way on Windows.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------
# JSON


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` into plain JSON types: numpy/torch scalars and arrays become Python numbers and
    lists, non-finite floats become None (valid JSON has no NaN), paths become strings."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic | np.ndarray | torch.Tensor):
        return to_jsonable(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (see ``to_jsonable`` for the conversions)."""
    text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False, allow_nan=False, ensure_ascii=False)
    atomic_write_text(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; a missing or invalid file is a DataError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read JSON file {path}: {error}") from None


def check_record_fields(cls: type, record: Any, path: Path | str, kind: str, remedy: str) -> dict[str, Any]:
    """`record` as the JSON object of dataclass `cls` ("a run summary", "an analysis": `kind` with its
    article): a UserError naming `path` and `remedy` when it is not an object, lacks a required
    field or holds one `cls` does not have."""
    noun = kind.split(" ", 1)[1]
    if not isinstance(record, dict):
        raise UserError(f"{path} holds {json.dumps(record)[:40]}, not {kind} (a JSON object); {remedy}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    required = [
        name
        for name, f in known.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in record]
    if missing:
        raise UserError(f"{path} is not a complete {noun} (no {', '.join(missing)}); {remedy}")
    unknown = sorted(set(record) - set(known))
    if unknown:
        raise UserError(f"{path} holds fields no lp_prune {noun} has ({', '.join(unknown)}); {remedy}")
    return record
