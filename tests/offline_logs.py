"""Waiting for an offline W&B run's log to be complete before reading it back."""

from __future__ import annotations

import time
from pathlib import Path

from lp_prune.tracking import iter_records, run_file


def closed_log(run_folder: Path, timeout: float = 10.0) -> Path:
    """The run's .wandb log once wandb has written its last (exit) record.

    wandb 0.31's finish() can return before its service has flushed the log: the first run of a
    process, measured here, still held only the 7-byte file header; it was complete ~50 ms later.
    """
    path = run_file(run_folder)
    deadline = time.monotonic() + timeout
    while not any(record.WhichOneof("record_type") == "exit" for record in iter_records(path)):
        assert time.monotonic() < deadline, f"{path} has no exit record after {timeout} s"
        time.sleep(0.05)
    return path
