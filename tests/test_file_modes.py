"""Files a team can share: everything a run writes gets the mode a plain open() would give it
(0666 less the umask), not the 0600 of the private temporary file an atomic write starts from."""

from __future__ import annotations

import builtins
import os
import stat
from pathlib import Path

import pytest
import torch

from lp_prune.cli import main
from lp_prune.storage import files as files_module
from lp_prune.storage.files import atomic_write_text, current_umask, write_json
from lp_prune.tracking.run_dir import RunDirectory
from lp_prune.tracking.saved_masks import save_masks
from lp_prune.tracking.saved_model import save_model_streaming

UMASKS = [0o022, 0o077, 0o002]  # a usual default, a private one, a group-writable one


@pytest.fixture
def umask(request):
    """Run the test under request.param as the process umask; the old one comes back afterwards."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", UMASKS, indirect=True)
def test_umask_is_read_without_changing_it(umask, monkeypatch):
    assert current_umask() == umask
    assert os.umask(umask) == umask  # still set: reading it changed nothing
    # Without /proc (macOS, ...) the one-time set-and-restore gives the same value.
    real_open = builtins.open

    def no_proc(file, *args, **kwargs):
        if str(file).startswith("/proc/"):
            raise FileNotFoundError(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(files_module, "_umask_fallback", None)
    assert current_umask() == umask
    assert os.umask(umask) == umask


@pytest.mark.parametrize("umask", UMASKS, indirect=True)
def test_run_directory_files_get_the_umask_mode(umask, tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    expected = 0o666 & ~umask
    run = RunDirectory.create(tmp_path / "run")
    run.mark_running()
    assert mode(run.status_file) == expected
    atomic_write_text(run.config, "seed: 0\n")
    write_json(run.summary, {"sparsity": 0.5})
    save_masks(run, {"model.layers.0.mlp.up_proj": torch.zeros(4, 8, dtype=torch.bool)})
    save_model_streaming(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run.model)
    run.mark_complete()
    for path in (run.status_file, run.config, run.summary, run.masks, run.weights):
        assert mode(path) == expected, f"{path.name}: {oct(mode(path))} != {oct(expected)}"


@pytest.mark.parametrize("umask", [0o022], indirect=True)
def test_a_whole_run_is_readable_by_the_team(umask, tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    args = ["--data.nsamples", "2", "--data.seqlen", "16", "--data.eval_windows", "1", "--data.eval_seqlen", "16"]
    args += ["--data.eval_languages", "[en]", "--save_model", "true", "--wandb.mode", "disabled"]
    assert main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *args]) == 0
    files = [path for path in out.rglob("*") if path.is_file()]
    names = {path.name for path in files}
    assert {"status", "config.yaml", "summary.json", "masks.safetensors", "model.safetensors"} <= names
    wrong = {str(path.relative_to(out)): oct(mode(path)) for path in files if mode(path) != 0o644}
    assert wrong == {}
    folders = [out, *(path for path in out.rglob("*") if path.is_dir())]
    assert all(mode(folder) == 0o755 for folder in folders)
