"""Runs stopped part-way for the resume and safety tests: a real `lp-prune run` process held (then
killed) once a given layer is saved, and a run whose save hit a full disk."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

HOLD = Path(__file__).with_name("hold_after_layer.py")  # lp-prune, held once a given layer is saved


def start_held(
    layer: int,
    args: list[str],
    out: Path,
    env: Mapping[str, str] | None = None,
    ready: Callable[[], bool] = lambda: True,
    output: int | None = subprocess.PIPE,
) -> subprocess.Popen:
    """A real `lp-prune run` process that waits once layer `layer` is saved (and `ready()` holds)."""
    proc = subprocess.Popen(
        [sys.executable, str(HOLD), str(layer), *args],
        env={**os.environ, **(env or {})},
        stdout=output,
        stderr=output,
        text=True,
    )
    state = out / "progress" / "state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if state.exists() and json.loads(state.read_text() or "{}").get("layers_done") == layer + 1 and ready():
            return proc
        if proc.poll() is not None:
            detail = proc.communicate()[1] if output == subprocess.PIPE else ""
            pytest.fail(f"the run ended before layer {layer} was saved: {(detail or '')[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the run never reached the layer")


def stop_while_saving(run: Callable[[], int]) -> None:
    """`run()` (an lp-prune main call) with the masks' save failing on a full disk: it must exit 2."""
    import lp_prune.run_writer

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lp_prune.run_writer, "save_masks", full_disk)
        assert run() == 2
