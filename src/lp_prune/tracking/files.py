"""Files written safely: atomic replacement with the mode a plain open() gives, and JSON in and out.

Every file is written atomically (temporary file in the same folder, fsync, ``os.replace``), so a
reader sees either the old file or the new one, never a half-written one. The file ends with the mode a
plain ``open()`` would give it (0666 less the umask), so colleagues on shared storage can read runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lp_prune.errors import DataError, UserError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success, fsync it and move it onto ``path``.

    If the body raises, the temporary file is removed and ``path`` keeps its old content.
    """
    target = Path(path)
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
