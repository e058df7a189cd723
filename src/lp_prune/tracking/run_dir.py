"""The run directory: the durable record of one pruning run.

Layout of a run directory::

    <root>/
        lp_prune_run.json   the marker: this folder is lp_prune's run directory, what the run was
                            started with (config and model shape), checked by --resume, and its W&B
                            run (id, masks artifact), which --resume continues
        .lp_prune.lock      held while a run works here (storage.run_lock)
        status              "RUNNING" while the run works, "COMPLETE" once everything is written
        config.yaml         the resolved configuration
        summary.json        final metrics (JSON; NaN and infinities are written as null)
        masks.safetensors   the pruning masks, bit-packed (format: tracking.saved_masks)
        calibration.json    which text every calibration window came from (lp_prune.data.record)
        calibration_tokens.pt  the calibration windows' token ids, [n, seqlen] (a data.source tokens file)
        model/              the pruned model (--save_model): config.json, sparsity_config.json (the
                            sparsity recorded, tracking.sparsity_config) and model.safetensors, or for models above
                            save_shard_size model-0000k-of-0000n.safetensors shards and
                            model.safetensors.index.json (the transformers layout); README.md, its card
        model-compressed/   the same model as a compressed checkpoint (--save_model with save_compressed):
                            for methods that quantize compressed-tensors' pack-quantized format
                            (tracking.quantized_checkpoint); with save_compressed sparse-bitmask, for
                            methods that prune, the bitmask layout (tracking.sparse_checkpoint); its
                            config in config.json, a card

A folder is taken as `--out` only when it is new, empty, or carries the marker: anything else is a
user's folder and is refused before a file is written. `--overwrite` removes only what a run writes
(a symbolic link among it is removed itself, never what it points to). Every file in it is written
atomically, with the mode a plain open() gives, and never through a symbolic link (storage.files): a
link planted where a run writes (its files, its folders, anything in model/, model-compressed/ or
progress/) is refused in one line naming it before any work starts, and again at each write.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lp_prune.config.code_options import requests, without_code
from lp_prune.config.io import read_run_config
from lp_prune.errors import DataError, UserError
from lp_prune.storage.files import atomic_write_text, checked_folder, read_json, refuse_link, write_json
from lp_prune.storage.run_lock import LOCK_FILE, RunLock
from lp_prune.tracking.saved_model import WEIGHTS_FILE, weight_files

if TYPE_CHECKING:
    from lp_prune.config import RunConfig

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
MASKS_FILE = "masks.safetensors"
MODEL_DIR = "model"
COMPRESSED_MODEL_DIR = "model-compressed"
CALIBRATION_RECORD_FILE = "calibration.json"
CALIBRATION_TOKENS_FILE = "calibration_tokens.pt"
STATUS_FILE = "status"
MARKER_FILE = "lp_prune_run.json"
MARKER_FORMAT = "lp_prune-run/1"
# What a run writes besides the files named above; --overwrite removes exactly these.
RUN_OUTPUTS = ("lm_eval_results.json", "calibration_generated.json", "progress", "activations", "wandb")
# Folders a run writes whole files into: a link inside them is refused as well. (wandb/ is W&B's own,
# which keeps links of its own in it.)
FILLED_FOLDERS = (MODEL_DIR, COMPRESSED_MODEL_DIR, "progress")
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # atomic_output's names (mkstemp's 8 characters)

STATUS_RUNNING = "RUNNING"
STATUS_COMPLETE = "COMPLETE"


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
    def compressed_model(self) -> Path:
        return self.root / COMPRESSED_MODEL_DIR

    @property
    def weights(self) -> Path:
        """The single weight file; a model saved in shards has none: see weight_files()."""
        return self.model / WEIGHTS_FILE

    def writable_folder(self, name: str, make: bool = True) -> Path:
        """The folder `name` of the run (model, progress, ...), made where missing (`make`); a symbolic
        link on the way is refused (PlantedLink)."""
        return checked_folder(self.root / name, self.root, make)

    def refuse_planted_links(self) -> None:
        """PlantedLink naming the first symbolic link where a run writes: any of its files and folders
        at the top, anything inside the folders it fills."""
        names = (MARKER_FILE, STATUS_FILE, CONFIG_FILE, SUMMARY_FILE, MASKS_FILE, CALIBRATION_RECORD_FILE)
        for name in (*names, CALIBRATION_TOKENS_FILE, MODEL_DIR, COMPRESSED_MODEL_DIR, *RUN_OUTPUTS):
            refuse_link(self.root / name)
        for name in FILLED_FOLDERS:
            folder = self.root / name
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    refuse_link(path)

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
            run.refuse_planted_links()
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
        """A fresh marker for a run that starts here (a W&B run recorded before is forgotten)."""
        write_json(self.marker, {"format": MARKER_FORMAT, "started_with": dict(started_with)})

    def wandb_record(self) -> dict[str, Any]:
        """The W&B run this run logs to: {"id": ..., "masks_artifact": ...} as far as known, else {}."""
        try:
            record = self.read_marker().get("wandb")
        except DataError:
            return {}
        return dict(record) if isinstance(record, Mapping) else {}

    def record_wandb(self, **values: str) -> None:
        """Add to the marker's W&B record (the run id when the W&B run starts, the masks artifact's name
        when it is logged), so that --resume continues the same W&B run."""
        marker = self.read_marker()
        marker["wandb"] = {**self.wandb_record(), **values}
        write_json(self.marker, marker)

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
        """Half-written files of an attempt that was killed while writing (the temporaries of
        atomic_output and staged_into); a link of such a name is removed itself."""
        removed = []
        for folder in (self.root, self.model, self.compressed_model, self.root / "progress"):
            if folder.is_dir() and not folder.is_symlink():
                for path in folder.iterdir():
                    if not _TEMPORARY.match(path.name):
                        continue
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
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

    def read_config(self, as_written: bool = False) -> RunConfig:
        """The configuration the run was started with (config.yaml), parsed like the command line's.

        Options that run code (config.code_options) are off: a run folder is not the one to ask for
        code. `as_written`: as the file says, for the checks of --resume and warnings only."""
        config = read_run_config(self.config)
        return config if as_written else without_code(config)

    def code_requests(self) -> dict[str, Any]:
        """The options that run code which config.yaml turns on, with their values."""
        return requests(self.read_config(as_written=True))

    def _remove_artefacts(self) -> None:
        # Status first: if removal stops halfway, the folder no longer claims to be complete.
        # A symbolic link is removed itself; what it points to is never touched.
        files = (self.summary, self.masks, self.config, self.calibration_record, self.calibration_tokens)
        folders = (self.model, self.compressed_model)
        for path in (self.status_file, *files, *folders, *(self.root / name for name in RUN_OUTPUTS)):
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
