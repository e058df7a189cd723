"""The run directory: the durable record of one pruning run.

Layout of a run directory::

    <root>/
        lp_prune_run.json   the marker: this folder is lp_prune's run directory, and what the run was
                            started with (config and model shape), checked by --resume
        .lp_prune.lock      held while a run works here (tracking.run_lock)
        status              "RUNNING" while the run works, "COMPLETE" once everything is written
        config.yaml         the resolved configuration
        summary.json        final metrics (JSON; NaN and infinities are written as null)
        masks.safetensors   the pruning masks, bit-packed (format below)
        calibration.json    which text every calibration window came from (lp_prune.data.record)
        calibration_tokens.pt  the calibration windows' token ids, [n, seqlen] (a data.source tokens file)
        model/              the pruned model (--save_model): config.json and model.safetensors, or for
                            models above save_shard_size model-0000k-of-0000n.safetensors shards and
                            model.safetensors.index.json (the transformers layout)

A folder is taken as `--out` only when it is new, empty, or carries the marker: anything else is a
user's folder and is refused before a file is written. `--overwrite` removes only what a run writes.

Every file is written atomically (temporary file in the same folder, fsync, ``os.replace``), so a
reader sees either the old file or the new one, never a half-written one. The file ends with the mode a
plain ``open()`` would give it (0666 less the umask), so colleagues on shared storage can read runs.

Mask file format (``masks.safetensors``)
-----------------------------------------
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
import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lp_prune.errors import DataError, UserError
from lp_prune.pruning.masks import MASK_BITORDER, PackedMask, packed_mask, unpack_mask
from lp_prune.runtime import release_mapped_weights
from lp_prune.tracking.run_lock import LOCK_FILE, RunLock

if TYPE_CHECKING:
    from lp_prune.config import RunConfig

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
MASKS_FILE = "masks.safetensors"
MODEL_DIR = "model"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
CALIBRATION_RECORD_FILE = "calibration.json"
CALIBRATION_TOKENS_FILE = "calibration_tokens.pt"
SAVE_CHUNK = 64 << 20  # bytes written between two hand-backs of mapped weight pages
STATUS_FILE = "status"
MARKER_FILE = "lp_prune_run.json"
MARKER_FORMAT = "lp_prune-run/1"
# What a run writes besides the files named above; --overwrite removes exactly these.
RUN_OUTPUTS = ("lm_eval_results.json", "calibration_generated.json", "progress", "activations", "wandb")
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # atomic_output's names (mkstemp's 8 characters)

STATUS_RUNNING = "RUNNING"
STATUS_COMPLETE = "COMPLETE"

MASK_SHAPES_KEY = "lp_prune.mask_shapes"
MASK_FORMAT_KEY = "lp_prune.format"
MASK_BITORDER_KEY = "lp_prune.bitorder"
MASK_FORMAT = "packed-masks/1"


# ---------------------------------------------------------------------------------------------------
# Atomic writes


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


# ---------------------------------------------------------------------------------------------------
# The run directory


@dataclass(frozen=True)
class RunDirectory:
    """Paths of one run directory and its RUNNING / COMPLETE status."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_FILE

    @property
    def masks(self) -> Path:
        return self.root / MASKS_FILE

    @property
    def model(self) -> Path:
        return self.root / MODEL_DIR

    @property
    def weights(self) -> Path:
        """The single weight file; a model saved in shards has none: see weight_files()."""
        return self.model / WEIGHTS_FILE

    def weight_files(self) -> list[Path]:
        """The saved model's safetensors files (one, or its shards)."""
        return weight_files(self.model)

    @property
    def status_file(self) -> Path:
        return self.root / STATUS_FILE

    @property
    def calibration_record(self) -> Path:
        return self.root / CALIBRATION_RECORD_FILE

    @property
    def calibration_tokens(self) -> Path:
        return self.root / CALIBRATION_TOKENS_FILE

    @classmethod
    def create(cls, path: str | os.PathLike[str], overwrite: bool = False) -> RunDirectory:
        """Make (or reuse) the folder for a new run, and mark it as lp_prune's.

        The folder must be new, empty, or marked (see `check_claimable`). A COMPLETE run is never
        silently replaced: it needs ``overwrite=True``, which removes its status and what the run
        wrote (summary, masks, model folder, ...) so nothing stale survives. An unfinished run
        (RUNNING, or no status) is reused as it is. Use `claimed` to hold the lock as well.
        """
        run = cls(Path(path))
        run.check_claimable()
        if run.is_complete() and not overwrite:
            raise UserError(
                f"run directory {run.root} holds a complete run; use another --out, or --overwrite true to replace it"
            )
        try:
            if run.is_complete():
                run._remove_artefacts()
            run.root.mkdir(parents=True, exist_ok=True)
            _probe_writable(run.root)
            if not run.is_marked():
                run.write_marker({})
            run.remove_temporaries()
        except OSError as error:
            raise UserError(f"cannot write to run directory {run.root}: {error.strerror or error}") from None
        return run

    @classmethod
    @contextlib.contextmanager
    def claimed(cls, path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[RunDirectory]:
        """`create`, done and held under the folder's lock (one run at a time) for the block."""
        run = cls(Path(path))
        run.check_claimable()
        try:
            run.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot write to run directory {run.root}: {error.strerror or error}") from None
        with RunLock(run.root):
            yield cls.create(path, overwrite)

    def check_claimable(self) -> None:
        """New, empty (but for a lock file), or marked as lp_prune's; anything else is someone's folder."""
        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise UserError(f"cannot write to run directory {self.root}: it is a file, not a folder")
        if self.is_marked():
            return
        try:
            entries = sorted(entry.name for entry in self.root.iterdir() if entry.name != LOCK_FILE)
        except OSError as error:
            raise UserError(f"cannot write to run directory {self.root}: {error.strerror or error}") from None
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UserError(
                f"--out {self.root} is not empty and not an lp_prune run directory (it holds {shown}); "
                "nothing was written: choose a new or empty folder"
            )

    @property
    def marker(self) -> Path:
        return self.root / MARKER_FILE

    def is_marked(self) -> bool:
        """True when the folder carries lp_prune's marker (a file of that name with other content does not count)."""
        try:
            content = json.loads(self.marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(content, dict) and content.get("format") == MARKER_FORMAT

    def read_marker(self) -> dict[str, Any]:
        """The marker's content: {"format": ..., "started_with": {...}} once a run has started here."""
        if not self.is_marked():
            raise DataError(f"{self.root} is not an lp_prune run directory (no valid {MARKER_FILE})")
        return read_json(self.marker)

    def write_marker(self, started_with: Mapping[str, Any]) -> None:
        write_json(self.marker, {"format": MARKER_FORMAT, "started_with": dict(started_with)})

    def clear(self) -> None:
        """Remove everything in the folder but its lock (for a folder this process made itself)."""
        for path in self.root.iterdir():
            if path.name == LOCK_FILE:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    def remove_temporaries(self) -> list[Path]:
        """Half-written files of an attempt that was killed while writing (atomic_output's temporaries)."""
        removed = []
        for folder in (self.root, self.model, self.root / "progress"):
            if folder.is_dir() and not folder.is_symlink():
                for path in folder.iterdir():
                    if _TEMPORARY.match(path.name) and path.is_file():
                        path.unlink()
                        removed.append(path)
        return removed

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDirectory:
        """An existing run directory (complete or not); a missing folder is a DataError."""
        run = cls(Path(path))
        if not run.root.is_dir():
            raise DataError(f"run directory not found: {run.root}")
        return run

    def status(self) -> str | None:
        """The status: RUNNING, COMPLETE, or None when none was written."""
        try:
            return self.status_file.read_text(encoding="utf-8").strip() or None
        except (FileNotFoundError, NotADirectoryError):
            return None

    def mark_running(self) -> None:
        atomic_write_text(self.status_file, STATUS_RUNNING + "\n")

    def mark_complete(self) -> None:
        atomic_write_text(self.status_file, STATUS_COMPLETE + "\n")

    def is_complete(self) -> bool:
        return self.status() == STATUS_COMPLETE

    def read_config(self) -> RunConfig:
        """The configuration the run was started with (config.yaml), parsed like the command line's."""
        from lp_prune.config import read_run_config

        return read_run_config(self.config)

    def _remove_artefacts(self) -> None:
        # Status first: if removal stops halfway, the folder no longer claims to be complete.
        # A symbolic link is removed itself; what it points to is never touched.
        files = (self.summary, self.masks, self.config, self.calibration_record, self.calibration_tokens)
        for path in (self.status_file, *files, self.model, *(self.root / name for name in RUN_OUTPUTS)):
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)


def unwritable_reason(folder: Path) -> str | None:
    """Why `folder` cannot be written to ('a file is in the way', the system's reason), or None.
    The folder is made when it is missing."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe_writable(folder)
    except OSError as error:
        return "a file is in the way" if folder.is_file() else str(error.strerror or error)
    return None


def _probe_writable(folder: Path) -> None:
    # os.access is wrong for root and for some network file systems: try a real write instead.
    with tempfile.TemporaryFile(dir=folder):
        pass


RunDirLike = RunDirectory | str | os.PathLike[str]


def as_run_directory(run_dir: RunDirLike) -> RunDirectory:
    return run_dir if isinstance(run_dir, RunDirectory) else RunDirectory(Path(run_dir))


# ---------------------------------------------------------------------------------------------------
# Masks


def save_masks(run_dir: RunDirLike, masks: Mapping[str, torch.Tensor | PackedMask]) -> Path:
    """Write ``masks`` (name -> bool tensor with True = pruned, or a PackedMask) to ``masks.safetensors``.

    The file is byte-reproducible: written by `_write_safetensors`, whose header keeps the given order
    (safetensors' own writer orders the metadata differently in every process)."""
    path = as_run_directory(run_dir).masks
    path.parent.mkdir(parents=True, exist_ok=True)
    packed = {name: mask if isinstance(mask, PackedMask) else packed_mask(mask) for name, mask in masks.items()}
    metadata = {
        MASK_FORMAT_KEY: MASK_FORMAT,
        MASK_BITORDER_KEY: MASK_BITORDER,
        MASK_SHAPES_KEY: json.dumps({name: list(mask.shape) for name, mask in packed.items()}),
    }
    _write_safetensors(path, {name: mask.bits for name, mask in packed.items()}, metadata)
    return path


def mask_names(run_dir: RunDirLike) -> list[str]:
    """Names of the saved masks, in the order they were saved."""
    with _open_masks(as_run_directory(run_dir).masks) as (_, shapes):
        return list(shapes)


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


# ---------------------------------------------------------------------------------------------------
# The pruned model, written tensor by tensor


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


DEFAULT_SHARD_SIZE = 50 * 10**9  # transformers 5's save_pretrained max_shard_size ("50GB")
_SHARD_NAME = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


def save_model_streaming(
    model: torch.nn.Module, folder: str | os.PathLike[str], max_shard_size: int = DEFAULT_SHARD_SIZE
) -> list[Path]:
    """Save a transformers model as config.json + safetensors weights without copying its weights.

    save_pretrained / safetensors.save_file turn every tensor into a bytes object first, so the
    process briefly holds the weights twice (+0.4 GB measured on Gemma-3-270M; +16 GB for an 8B model
    in fp32). Here each file's header is written first and each tensor's own buffer after it, in
    chunks; the pages of weights still mapped from the loaded file are handed back every SAVE_CHUNK
    bytes. Tensors that share storage (tied embeddings) are written once, under their first name, as
    save_pretrained does.

    Weights above `max_shard_size` bytes go into shards in the transformers layout: tensors in
    state_dict order fill model-00001-of-0000n.safetensors, ... up to max_shard_size each (a bigger
    tensor gets a shard of its own), and model.safetensors.index.json maps every tensor to its shard
    ({"metadata": {"total_size": bytes}, "weight_map": {name: file}}). One shard keeps the plain name
    model.safetensors and no index, as transformers does. Returns the weight files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key not in seen:
            seen.add(key)
            tensors[name] = tensor.detach()
    shards = _plan_shards(tensors, max_shard_size)
    files = _shard_names(len(shards))
    for shard, file in zip(shards, files, strict=True):
        _write_safetensors(folder / file, {name: tensors[name] for name in shard})
    if len(shards) > 1:
        weight_map = {name: file for shard, file in zip(shards, files, strict=True) for name in shard}
        total = sum(_nbytes(tensor) for tensor in tensors.values())
        write_json(folder / WEIGHTS_INDEX_FILE, {"metadata": {"total_size": total}, "weight_map": weight_map})
    _remove_stale_weights(folder, keep=set(files) | ({WEIGHTS_INDEX_FILE} if len(shards) > 1 else set()))
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    return [folder / file for file in files]


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _plan_shards(tensors: Mapping[str, torch.Tensor], max_shard_size: int) -> list[list[str]]:
    """Tensor names per shard, in order: a shard closes before the tensor that would take it past the
    limit; a tensor bigger than the limit gets a shard of its own (huggingface_hub's split, which
    transformers' save_pretrained uses)."""
    if max_shard_size < 1:
        raise ValueError(f"max_shard_size must be at least 1 byte, got {max_shard_size}")
    shards: list[list[str]] = []
    current: list[str] = []
    current_size = 0
    for name, tensor in tensors.items():
        size = _nbytes(tensor)
        if size > max_shard_size:
            shards.append([name])
            continue
        if current and current_size + size > max_shard_size:
            shards.append(current)
            current, current_size = [], 0
        current.append(name)
        current_size += size
    if current or not shards:
        shards.append(current)
    return shards


def _shard_names(n_shards: int) -> list[str]:
    if n_shards == 1:
        return [WEIGHTS_FILE]
    return [f"model-{k:05d}-of-{n_shards:05d}.safetensors" for k in range(1, n_shards + 1)]


def _remove_stale_weights(folder: Path, keep: set[str]) -> None:
    """Weight files of an earlier save into the same folder that this save did not write: from_pretrained
    would otherwise find an old single file beside a new index, or old shards."""
    for path in folder.iterdir():
        is_weights = path.name in (WEIGHTS_FILE, WEIGHTS_INDEX_FILE) or _SHARD_NAME.fullmatch(path.name)
        if is_weights and path.name not in keep and path.is_file():
            path.unlink()


def _write_safetensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """One safetensors file, atomically: the header, then each tensor's bytes straight from its buffer."""
    header: dict[str, Any] = {"__metadata__": dict(metadata) if metadata is not None else {"format": "pt"}}
    offset = 0
    for name, tensor in tensors.items():
        size = _nbytes(tensor)
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
        for tensor in tensors.values():
            data = memoryview(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # no copy
            for chunk in range(0, len(data), SAVE_CHUNK):
                out.write(data[chunk : chunk + SAVE_CHUNK])
                unreleased += min(SAVE_CHUNK, len(data) - chunk)
                if unreleased >= SAVE_CHUNK:  # weights read from their mapped file leave again
                    release_mapped_weights()
                    unreleased = 0


def weight_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The safetensors files of a saved model: the shards its index names, else model.safetensors."""
    folder = Path(folder)
    index = folder / WEIGHTS_INDEX_FILE
    if index.is_file():
        weight_map = read_json(index).get("weight_map", {})
        return [folder / file for file in dict.fromkeys(weight_map.values())]
    single = folder / WEIGHTS_FILE
    if not single.is_file():
        raise DataError(f"{folder} holds no saved weights ({WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE})")
    return [single]


def load_weights(folder: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model (single file or shards) by name, as safetensors stores them."""
    from safetensors.torch import load_file

    weights: dict[str, torch.Tensor] = {}
    for file in weight_files(folder):
        weights.update(load_file(file))
    return weights
