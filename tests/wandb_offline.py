"""Read an offline W&B run back from its ``run-*.wandb`` transaction log.

wandb 0.31 ships no Python reader for this log (the old ``wandb.sdk.internal.datastore`` is gone;
``wandb sync`` and ``wandb leet inspect`` live in the Go ``wandb-core`` binary). The log format is
small and versioned, so it is read here directly:

- a 7-byte file header: ``b":W&B"``, magic ``0xBEE1`` (uint16 little-endian), version ``0``;
- then LevelDB-log framing in 32 KiB blocks (the file header counts towards the first block): each
  chunk has a 7-byte header (CRC-32 of type byte + payload, uint32 LE; payload length, uint16 LE;
  type: 1 full, 2 first, 3 middle, 4 last). A block's tail shorter than a chunk header is padding;
- each reassembled payload is a serialised ``wandb.proto.wandb_internal_pb2.Record``.

A truncated final chunk (a run still writing, or one that crashed) ends the log quietly; a CRC
mismatch before that is a DataError. wandb is imported inside the functions only.

Keys: history rows are flat, nested keys joined with "." (as the W&B UI shows them); summary and
config keep nested dicts. Keys starting with "_" (``_step``, ``_runtime``, ``_timestamp``,
``_wandb``) are W&B's own and left out unless ``include_internal=True``.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lp_prune.errors import DataError

_FILE_IDENT = b":W&B"
_FILE_MAGIC = 0xBEE1
_FILE_VERSION = 0
_FILE_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK_SIZE = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


# ---------------------------------------------------------------------------------------------------
# Finding runs


def find_offline_runs(wandb_dir: str | os.PathLike[str]) -> list[Path]:
    """The ``offline-run-*`` folders of a ``wandb/`` folder (or of the WANDB_DIR holding it), oldest first."""
    folder = Path(wandb_dir)
    if not folder.is_dir():
        raise DataError(f"W&B folder not found: {folder}")
    runs = _offline_run_folders(folder) or _offline_run_folders(folder / "wandb")
    # Names carry the start time to the second ("offline-run-20250101_120000-<id>"); mtime breaks ties.
    return sorted(runs, key=lambda path: (path.name.split("-")[2], path.stat().st_mtime))


def _offline_run_folders(folder: Path) -> list[Path]:
    return [path for path in folder.glob("offline-run-*") if path.is_dir() and not path.is_symlink()]


def run_file(run_folder: str | os.PathLike[str]) -> Path:
    """The ``run-*.wandb`` log inside a run folder (a ``.wandb`` path is returned as it is)."""
    path = Path(run_folder)
    if path.is_file() and path.suffix == ".wandb":
        return path
    logs = sorted(path.glob("run-*.wandb")) if path.is_dir() else []
    if len(logs) != 1:
        found = "none" if not logs else ", ".join(log.name for log in logs)
        raise DataError(f"expected one run-*.wandb file in {path}, found {found}")
    return logs[0]


# ---------------------------------------------------------------------------------------------------
# Reading records


def iter_records(wandb_file: str | os.PathLike[str]) -> Iterator[Any]:
    """Yield every ``wandb_internal_pb2.Record`` in a run's log (a run folder works too)."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2

    path = run_file(wandb_file)
    for payload in _iter_payloads(path):
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(payload)
        except DecodeError as error:
            raise DataError(f"damaged record in {path}: {error}") from None
        yield record


def read_history(wandb_file: str | os.PathLike[str], include_internal: bool = False) -> list[dict[str, Any]]:
    """Every logged history row, in order, as ``{key: value}``."""
    rows = []
    for record in iter_records(wandb_file):
        if record.WhichOneof("record_type") == "history":
            items = ((".".join(_item_path(item)), _history_value(item)) for item in record.history.item)
            rows.append({key: value for key, value in items if include_internal or not key.startswith("_")})
    return rows


def read_summary(wandb_file: str | os.PathLike[str], include_internal: bool = False) -> dict[str, Any]:
    """The run's final summary: all summary updates and removals applied in order."""
    summary: dict[str, Any] = {}
    for record in iter_records(wandb_file):
        if record.WhichOneof("record_type") == "summary":
            _apply(summary, record.summary.update, record.summary.remove)
    return _public(summary, include_internal)


def read_config(wandb_file: str | os.PathLike[str], include_internal: bool = False) -> dict[str, Any]:
    """The run's config: the one given to ``wandb.init`` plus later ``config.update`` calls."""
    config: dict[str, Any] = {}
    for record in iter_records(wandb_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            _apply(config, record.run.config.update, record.run.config.remove)
        elif kind == "config":
            _apply(config, record.config.update, record.config.remove)
    return _public(config, include_internal)


# ---------------------------------------------------------------------------------------------------
# Framing


def _iter_payloads(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        block = handle.read(_BLOCK_SIZE)
        _check_file_header(block, path)
        offset = _FILE_HEADER.size
        pending: bytearray | None = None
        while block:
            while offset + _CHUNK_HEADER.size <= len(block):
                crc, length, kind = _CHUNK_HEADER.unpack_from(block, offset)
                start, end = offset + _CHUNK_HEADER.size, offset + _CHUNK_HEADER.size + length
                if kind == 0 or end > len(block):
                    break  # zero padding, or a chunk cut off at the end of the file
                chunk = block[start:end]
                if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
                    raise DataError(f"checksum mismatch at byte {handle.tell() - len(block) + offset} of {path}")
                offset = end
                pending, payload = _assemble(pending, kind, chunk, path)
                if payload is not None:
                    yield payload
            block, offset = handle.read(_BLOCK_SIZE), 0


def _check_file_header(block: bytes, path: Path) -> None:
    if len(block) < _FILE_HEADER.size:
        raise DataError(f"not a W&B run log (too short): {path}")
    ident, magic, version = _FILE_HEADER.unpack_from(block)
    if ident != _FILE_IDENT or magic != _FILE_MAGIC:
        raise DataError(f"not a W&B run log: {path}")
    if version != _FILE_VERSION:
        raise DataError(f"unsupported W&B run log version {version}: {path}")


def _assemble(pending: bytearray | None, kind: int, chunk: bytes, path: Path) -> tuple[bytearray | None, bytes | None]:
    """Combine chunks into payloads: returns (still pending, finished payload or None)."""
    if kind == _FULL:
        return None, chunk
    if kind == _FIRST:
        return bytearray(chunk), None
    if kind in (_MIDDLE, _LAST) and pending is not None:
        pending += chunk
        return (pending, None) if kind == _MIDDLE else (None, bytes(pending))
    raise DataError(f"damaged W&B run log (chunk type {kind} out of order): {path}")


# ---------------------------------------------------------------------------------------------------
# Items


def _item_path(item: Any) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _history_value(item: Any) -> Any:
    # wandb 0.31 may write a typed value instead of (or beside) value_json.
    typed = item.WhichOneof("value")
    if typed is None:
        return _json_value(item.value_json)
    if typed == "none":
        return None
    if typed == "json":
        return json.loads(item.json)
    return getattr(item, typed)


def _json_value(text: str) -> Any:
    # W&B spells non-finite floats NaN / Infinity / -Infinity, which json.loads accepts.
    return json.loads(text) if text else None


def _apply(target: dict[str, Any], updates: Any, removals: Any) -> None:
    for item in updates:
        *parents, leaf = _item_path(item)
        _subdict(target, parents)[leaf] = _json_value(item.value_json)
    for item in removals:
        *parents, leaf = _item_path(item)
        _subdict(target, parents).pop(leaf, None)


def _subdict(target: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    for key in keys:
        child = target.get(key)
        if not isinstance(child, dict):
            child = target[key] = {}
        target = child
    return target


def _public(values: dict[str, Any], include_internal: bool) -> dict[str, Any]:
    return values if include_internal else {key: value for key, value in values.items() if not key.startswith("_")}


def closed_log(run_folder: str | os.PathLike[str], timeout: float = 10.0) -> Path:
    """The run's .wandb log once wandb has written its last (exit) record.

    wandb 0.31's finish() can return before its service has flushed the log: the first run of a
    process, measured here, still held only the 7-byte file header; it was complete ~50 ms later.
    """
    path = run_file(run_folder)
    deadline = time.monotonic() + timeout
    while not any(record.WhichOneof("record_type") == "exit" for record in iter_records(path)):
        if time.monotonic() > deadline:
            raise DataError(f"{path} has no exit record after {timeout} s")
        time.sleep(0.05)
    return path
