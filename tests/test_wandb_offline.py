"""Reading an offline W&B run back from its .wandb log (runs wandb offline; a few seconds)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from lp_prune.errors import UserError
from wandb_offline import (
    find_offline_runs,
    iter_records,
    read_config,
    read_history,
    read_summary,
    run_file,
)

wandb = pytest.importorskip("wandb")

LOGGED_ROWS = [
    {"layer": 0, "prune/snr_db/q_proj": 12.5, "prune/sparsity": 0.5},
    {"layer": 1, "prune/snr_db/q_proj": 9.25, "prune/sparsity": 0.5, "prune/error": float("nan")},
    {"layer": 2, "prune/snr_db/q_proj": -1.5, "nested": {"inner": 3}},
]


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One offline run, logged once for the whole module; returns its WANDB_DIR."""
    root = tmp_path_factory.mktemp("wandb_offline")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(root),
            "WANDB_SILENT": "true",
            "WANDB_CONFIG_DIR": str(root / "config"),
            "WANDB_CACHE_DIR": str(root / "cache"),
            "WANDB_DATA_DIR": str(root / "data"),
        }.items():
            patch.setenv(name, value)
        patch.delenv("WANDB_API_KEY", raising=False)
        # dir= and mode= as well: wandb reads the environment once per process, when its settings
        # first load (an earlier run elsewhere), and ignores later changes.
        run = wandb.init(project="t", config={"a": 1, "method": {"name": "wanda"}}, dir=str(root), mode="offline")
        for row in LOGGED_ROWS:
            run.log(row)
        run.config.update({"late": "yes"})
        run.summary["final/ppl"] = 17.25
        run.summary["final/snr"] = {"en": 1.0, "de": 2.0}
        run.summary["dropped"] = 1
        del run.summary["dropped"]
        run.finish()
        wandb.teardown()  # stop the service and forget its settings, so later tests start clean
    return root


def the_run(root: Path) -> Path:
    [folder] = find_offline_runs(root)
    return folder


def test_finds_the_run_and_its_log(offline_run: Path) -> None:
    folder = the_run(offline_run)
    assert folder.parent == offline_run / "wandb"
    assert folder.name.startswith("offline-run-")
    assert find_offline_runs(offline_run / "wandb") == [folder]
    log = run_file(folder)
    assert log.name.startswith("run-") and log.suffix == ".wandb"
    assert run_file(log) == log


def test_history_rows_come_back(offline_run: Path) -> None:
    rows = read_history(run_file(the_run(offline_run)))
    assert len(rows) == len(LOGGED_ROWS)
    assert rows[0] == {"layer": 0, "prune/snr_db/q_proj": 12.5, "prune/sparsity": 0.5}
    assert rows[1]["prune/snr_db/q_proj"] == 9.25 and math.isnan(rows[1]["prune/error"])
    assert rows[2] == {"layer": 2, "prune/snr_db/q_proj": -1.5, "nested.inner": 3}


def test_internal_keys_on_request(offline_run: Path) -> None:
    rows = read_history(the_run(offline_run), include_internal=True)
    assert [row["_step"] for row in rows] == [0, 1, 2]
    assert "_runtime" in read_summary(the_run(offline_run), include_internal=True)


def test_summary_merges_updates_and_removals(offline_run: Path) -> None:
    summary = read_summary(run_file(the_run(offline_run)))
    assert summary["final/ppl"] == 17.25
    assert summary["final/snr"] == {"en": 1.0, "de": 2.0}
    assert summary["layer"] == 2  # the last logged value of each history key
    assert "dropped" not in summary
    assert not any(key.startswith("_") for key in summary)


def test_config_includes_init_and_later_updates(offline_run: Path) -> None:
    assert read_config(run_file(the_run(offline_run))) == {"a": 1, "method": {"name": "wanda"}, "late": "yes"}


def test_truncated_log_reads_what_was_written(offline_run: Path, tmp_path: Path) -> None:
    """A run that is still writing (or crashed) ends mid-record: read what is complete."""
    original = run_file(the_run(offline_run))
    data = original.read_bytes()
    partial = tmp_path / "run-partial.wandb"
    cut = max(len(data) // 2, 8)
    partial.write_bytes(data[:cut])
    records = list(iter_records(partial))
    assert 0 < len(records) < len(list(iter_records(original)))


def test_damaged_log_is_a_user_error(offline_run: Path, tmp_path: Path) -> None:
    data = bytearray(run_file(the_run(offline_run)).read_bytes())
    damaged = tmp_path / "run-damaged.wandb"
    data[40] ^= 0xFF  # inside the first record's payload: its checksum no longer matches
    damaged.write_bytes(bytes(data))
    with pytest.raises(UserError, match="checksum"):
        read_history(damaged)

    not_a_log = tmp_path / "run-other.wandb"
    not_a_log.write_bytes(b"plain text, not a W&B log")
    with pytest.raises(UserError, match="not a W&B run log"):
        read_history(not_a_log)


def test_missing_folders_are_user_errors(tmp_path: Path, offline_run: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        find_offline_runs(tmp_path / "nowhere")
    assert find_offline_runs(tmp_path) == []
    empty_run = tmp_path / "offline-run-20250101_000000-abc"
    empty_run.mkdir()
    with pytest.raises(UserError, match="run-"):
        run_file(empty_run)
    copy = tmp_path / "offline-run-20250101_000001-def"
    shutil.copytree(the_run(offline_run), copy)
    assert find_offline_runs(tmp_path) == [empty_run, copy]
