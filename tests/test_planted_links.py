"""A symbolic link planted in a received run folder or a shared cache never turns a write into a write
elsewhere: the run refuses it in one line naming it, the files it points to keep every byte, and
nothing is created where it points. Each test plants the link it is named after."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from lp_prune.cli import main
from lp_prune.errors import UserError
from lp_prune.tracking import RunDirectory
from stopped_runs import stop_while_saving

SMALL = [
    "--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2",
    "--data.eval_windows", "1", "--data.eval_seqlen", "32", "--data.eval_languages", "[en]",
    "--save_model", "true", "--wandb.mode", "disabled",
]  # fmt: skip


def run_args(model_dir: Path, out: Path) -> list[str]:
    return ["run", "--model.name", str(model_dir), "--out", str(out), *SMALL]


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under `folder`: a file's SHA-256, a link's target, a folder as such."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            entries[key] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            entries[key] = "folder"
        else:
            entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def fail_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("lp-prune: error:"), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


@pytest.fixture(scope="module")
def unfinished_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A --save_model run that stopped while saving (a full disk): RUNNING, every layer in progress/,
    the tokenizer in model/ already."""
    out = tmp_path_factory.mktemp("unfinished") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LP_PRUNE_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setenv("HF_HUB_OFFLINE", "1")
        stop_while_saving(lambda: main(run_args(tiny_model_dir, out)))
    assert RunDirectory(out).status() == "RUNNING"
    assert (out / "progress" / "state.json").is_file() and (out / "model" / "tokenizer.json").is_file()
    return out


@pytest.fixture
def received(unfinished_run, tmp_path) -> Path:
    """A private copy of the unfinished run, as a colleague would hand it over."""
    copy = tmp_path / "received"
    shutil.copytree(unfinished_run, copy, symlinks=True)
    return copy


@pytest.fixture
def users_model(tiny_model_dir, tmp_path) -> Path:
    """The user's own model folder, which nothing here may change."""
    folder = tmp_path / "users-model"
    shutil.copytree(tiny_model_dir, folder)
    return folder


@pytest.fixture
def users_folder(tmp_path) -> Path:
    folder = tmp_path / "users-folder"
    folder.mkdir()
    (folder / "state.json").write_text('{"my": "own state"}\n')
    (folder / "notes.txt").write_text("the user's notes\n")
    return folder


# --- the run folder's lock ------------------------------------------------------------------------------


def test_resume_refuses_a_lock_file_linked_to_a_users_file(received, users_folder, capsys):
    before = snapshot(users_folder)
    lock = received / ".lp_prune.lock"
    lock.symlink_to(users_folder / "notes.txt")
    code = main(["run", "--resume", str(received)])
    assert snapshot(users_folder) == before
    line = fail_line(capsys)
    assert code == 2 and str(lock) in line and "symbolic link" in line


def test_resume_refuses_a_dangling_lock_link_and_creates_nothing_where_it_points(received, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    lock = received / ".lp_prune.lock"
    lock.symlink_to(outside / "created-by-lp-prune")
    code = main(["run", "--resume", str(received)])
    assert list(outside.iterdir()) == []
    assert code == 2 and str(lock) in fail_line(capsys)


# --- progress/ ------------------------------------------------------------------------------------------


def _link_progress(run: Path, users_folder: Path) -> Path:
    progress = run / "progress"
    shutil.rmtree(progress)
    progress.symlink_to(users_folder, target_is_directory=True)
    return progress


def test_resume_refuses_progress_linked_to_a_users_folder(received, users_folder, capsys):
    before = snapshot(users_folder)
    progress = _link_progress(received, users_folder)
    code = main(["run", "--resume", str(received)])
    assert snapshot(users_folder) == before
    assert code == 2 and str(progress) in fail_line(capsys)


def test_a_fresh_run_into_an_unfinished_folder_refuses_progress_linked_elsewhere(
    received, users_folder, tiny_model_dir, capsys
):
    before = snapshot(users_folder)
    progress = _link_progress(received, users_folder)
    code = main(run_args(tiny_model_dir, received))
    assert snapshot(users_folder) == before
    assert code == 2 and str(progress) in fail_line(capsys)


# --- model/ ---------------------------------------------------------------------------------------------


def test_resume_refuses_a_model_folder_linked_to_a_users_model(received, users_model, capsys):
    before = snapshot(users_model)
    model = received / "model"
    shutil.rmtree(model)
    model.symlink_to(users_model, target_is_directory=True)
    code = main(["run", "--resume", str(received)])
    assert snapshot(users_model) == before
    assert code == 2 and str(model) in fail_line(capsys)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json"])
def test_resume_refuses_a_model_file_linked_to_a_users_file(received, users_model, name, capsys):
    users_file = users_model / name
    users_file.write_text(users_file.read_text() + "\n")  # the user's own edit: not what the run would write
    before = snapshot(users_model)
    planted = received / "model" / name
    planted.unlink(missing_ok=True)
    planted.symlink_to(users_file)
    code = main(["run", "--resume", str(received)])
    assert snapshot(users_model) == before
    assert code == 2 and str(planted) in fail_line(capsys)


# --- the writes themselves, whatever was checked before ---------------------------------------------------


def test_every_write_refuses_a_link_in_its_place_or_on_its_way(tmp_path, users_folder):
    from lp_prune.storage.files import PlantedLink, atomic_write_text, checked_folder, open_no_follow, staged_into
    from lp_prune.tracking.saved_model import save_model_streaming

    before = snapshot(users_folder)
    root = tmp_path / "run"
    (root / "model").mkdir(parents=True)
    (root / "model" / "config.json").symlink_to(users_folder / "state.json")
    (root / "progress").symlink_to(users_folder, target_is_directory=True)
    (root / "status").symlink_to(users_folder / "notes.txt")
    with pytest.raises(PlantedLink, match="progress is a symbolic link"):
        checked_folder(root / "progress" / "deeper", root)
    with pytest.raises(PlantedLink, match="status is a symbolic link"):
        atomic_write_text(root / "status", "RUNNING\n")
    with pytest.raises(PlantedLink, match="status is a symbolic link"):
        open_no_follow(root / "status", os.O_RDWR | os.O_CREAT)
    with pytest.raises(PlantedLink, match=r"config\.json is a symbolic link"), staged_into(root / "model") as staging:
        (staging / "config.json").write_text("{}")
    with pytest.raises(PlantedLink, match=r"config\.json is a symbolic link"):
        save_model_streaming(_tiny_llama(), root / "model")
    assert snapshot(users_folder) == before
    assert not list((root / "model").glob(".staging.*"))  # the staging folder goes either way


def _tiny_llama() -> torch.nn.Module:
    from tiny_models import tiny_model

    return tiny_model("llama")


# --- the shared cache -----------------------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("LP_PRUNE_CACHE", str(folder))
    return folder


def _dense_entry(cache: Path):
    """The dense-perplexity cache entry of a planted model and its windows, and how to fill it."""
    from lp_prune.config import ModelConfig
    from lp_prune.data.windows import TokenWindows
    from lp_prune.evaluation.perplexity import cached_dense_perplexity, dense_cache_key

    model, windows = (
        ModelConfig(name="planted-model"),
        {"en": TokenWindows(torch.arange(12).reshape(3, 4), torch.full((3,), 9))},
    )
    entry = cache / "dense_perplexity" / f"{dense_cache_key(model, windows)}.json"
    return entry, lambda: cached_dense_perplexity(model, windows, lambda: {"en": {"ppl": 2.0}})


def test_a_cache_lock_linked_outside_is_refused_and_creates_nothing_there(cache, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    entry, fill = _dense_entry(cache)
    entry.parent.mkdir(parents=True)
    lock = entry.with_name(entry.name + ".lock")
    lock.symlink_to(outside / "created-by-lp-prune")
    with pytest.raises(UserError, match=rf"{lock.name} is a symbolic link"):
        fill()
    assert list(outside.iterdir()) == [] and not entry.exists()


def test_a_cache_folder_linked_to_a_users_folder_is_refused(cache, users_folder):
    before = snapshot(users_folder)
    entry, fill = _dense_entry(cache)
    cache.mkdir()
    entry.parent.symlink_to(users_folder, target_is_directory=True)
    with pytest.raises(UserError, match="dense_perplexity is a symbolic link"):
        fill()
    assert snapshot(users_folder) == before


def test_a_run_with_a_clean_folder_and_cache_still_completes(received, capsys):
    assert main(["run", "--resume", str(received)]) == 0
    assert RunDirectory(received).is_complete()
    assert not [path for path in received.rglob("*") if path.is_symlink()]
    assert json.loads((received / "model" / "config.json").read_text())["model_type"] == "llama"
    assert not list(received.rglob(".staging.*"))


# --- a received sweep folder ----------------------------------------------------------------------------


def test_a_sweep_refuses_a_run_log_linked_to_a_users_file(tmp_path, users_folder, monkeypatch, capsys):
    import lp_prune.sweeps.runner as runner
    from lp_prune.sweeps.expand import Sweep

    started = []

    class Finished:  # a run process that has ended at once
        returncode = 0

        def __init__(self, argv, **kwargs):
            started.append(argv)

        def poll(self):
            return 0

    monkeypatch.setattr(runner.subprocess, "Popen", Finished)
    before = snapshot(users_folder)
    sweep = Sweep("received", "grid", {}, ["lp-prune", "run", "${args}"], None, None, {})
    sweep_dir = tmp_path / "runs" / "received"
    sweep_dir.mkdir(parents=True)
    log = sweep_dir / "a-run.log"
    log.symlink_to(users_folder / "notes.txt")
    run = runner.PlannedRun("a-run", {}, ["lp-prune", "run"], sweep_dir / "a-run")
    with pytest.raises(UserError, match=r"a-run\.log is a symbolic link") as refused:
        try:
            runner.execute([run], sweep)
        finally:
            assert snapshot(users_folder) == before and not started
    assert str(log) in str(refused.value)
