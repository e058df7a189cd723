"""Nothing lost, nothing run that should not be: user folders, the run lock, signals, resume checks,
damaged progress, bounded YAML and byte-reproducible masks. Each test plants the fault it is named after."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import lp_prune
from lp_prune.calibration.checkpoint import load_layer_results
from lp_prune.cli import main
from lp_prune.errors import UserError
from lp_prune.storage.files import read_json
from lp_prune.storage.run_lock import LOCK_FILE, RunDirectoryBusy, RunLock
from lp_prune.tracking import RunDirectory
from lp_prune.tracking.fingerprint import check_resumable
from lp_prune.tracking.wandb_logger import artifact_name
from stopped_runs import start_held

SMALL = [
    "--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2",
    "--data.eval_windows", "1", "--data.eval_seqlen", "32", "--data.eval_languages", "[en]",
    "--save_model", "true",
]  # fmt: skip
EVIL_MARK = "imported_custom_code"


def run_args(model_dir, out) -> list[str]:
    return ["run", "--model.name", str(model_dir), "--out", str(out), *SMALL]


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def same_masks(a: Path, b: Path) -> bool:
    masks_a, masks_b = lp_prune.load_masks(a), lp_prune.load_masks(b)
    return masks_a.keys() == masks_b.keys() and all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a)


@pytest.fixture(scope="module")
def custom_code_model(tmp_path_factory):
    """The tiny Llama folder plus custom Python code (auto_map) that leaves a file behind if imported."""
    from conftest import save_tiny_model

    folder = save_tiny_model(tmp_path_factory.mktemp("custom-code") / "model")
    (folder / "evil.py").write_text(
        textwrap.dedent(f"""
        from pathlib import Path
        from transformers import LlamaConfig, LlamaForCausalLM
        Path(__file__).with_name("{EVIL_MARK}").touch()
        class EvilConfig(LlamaConfig):
            pass
        class EvilModel(LlamaForCausalLM):
            config_class = EvilConfig
        """)
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def reference_run(custom_code_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(run_args(custom_code_model, out)) == 0
    assert not (custom_code_model / EVIL_MARK).exists()  # without the flag, the folder's code never runs
    return out


@pytest.fixture(scope="module")
def killed_run(custom_code_model, tmp_path_factory):
    """A run SIGKILLed once layers 0 and 1 (of 3) are saved: RUNNING, with progress."""
    out = tmp_path_factory.mktemp("killed") / "run"
    proc = start_held(1, run_args(custom_code_model, out), out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert RunDirectory(out).status() == "RUNNING"
    return out


@pytest.fixture
def unfinished(killed_run, tmp_path) -> Path:
    """A private copy of the killed run, to damage or edit."""
    copy = tmp_path / "unfinished"
    shutil.copytree(killed_run, copy, symlinks=True)
    return copy


def fail_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("lp-prune: error:"), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


# --- --out: only new, empty or lp_prune's own folders ------------------------------------------------


def test_out_refuses_a_users_folder_and_leaves_it_untouched(tiny_model_dir, tmp_path, capsys):
    user = tmp_path / "u"
    (user / "progress").mkdir(parents=True)
    (user / "progress" / "thesis.tex").write_text("x")
    (user / "config.yaml").write_text("mine")
    before = listing(user)
    assert main(run_args(tiny_model_dir, user)) == 2
    assert "is not empty and not an lp_prune run directory" in fail_line(capsys)
    assert listing(user) == before and sorted(p.name for p in user.iterdir()) == ["config.yaml", "progress"]


def test_a_marker_named_file_with_other_content_is_not_a_run_directory(tmp_path):
    (tmp_path / "lp_prune_run.json").write_text('{"mine": true}')
    with pytest.raises(UserError, match="not an lp_prune run directory"):
        RunDirectory.create(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert RunDirectory.create(empty).is_marked()  # an empty folder is taken, and marked


# --- one run at a time ---------------------------------------------------------------------------------


def test_lock_is_exclusive_and_released(tmp_path):
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_FILE).exists()
        with pytest.raises(RunDirectoryBusy, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path):  # free again
        pass


def test_second_run_is_refused_while_the_first_holds_the_folder_and_a_dead_holder_is_stale(
    tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from lp_prune.storage.run_lock import RunLock; RunLock({str(out)!r}).acquire(); "
         "print('held', flush=True); import time; time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(run_args(tiny_model_dir, out)) == 2
        assert f"is in use by pid {holder.pid}" in fail_line(capsys)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # the refused run wrote nothing
    finally:
        holder.kill()  # as a crash would: the lock file stays behind, unlocked
        holder.wait()
    assert (out / LOCK_FILE).exists()
    assert main(run_args(tiny_model_dir, out)) == 0
    assert RunDirectory(out).is_complete() and not (out / LOCK_FILE).exists()


# --- any folder name -----------------------------------------------------------------------------------


def test_a_folder_name_with_spaces_and_unicode_completes(tiny_model_dir, tmp_path):
    out = tmp_path / "my run ü 模型"
    assert main(run_args(tiny_model_dir, out)) == 0
    assert RunDirectory(out).is_complete()


def test_artifact_names_are_valid_and_distinct():
    names = [artifact_name("masks", folder) for folder in ("a b", "a_b", "ü", "plain-run.1")]
    assert names[3] == "masks-plain-run.1"
    assert len(set(names)) == 4
    assert all(set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") for name in names)


# --- signals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_resumably(custom_code_model, reference_run, tmp_path, signum, code):
    out = tmp_path / "signalled"
    proc = start_held(0, run_args(custom_code_model, out), out)
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the run did not stop within 120 s of the signal: {proc.communicate()[1][-2000:]}")
    assert proc.returncode == code
    name = signal.Signals(signum).name
    resumable = f"lp-prune: stopped by {name}; the run is resumable: lp-prune run --resume {out}"
    assert err.strip().splitlines()[-1] == resumable
    assert RunDirectory(out).status() == "RUNNING" and not (out / LOCK_FILE).exists()
    if signum == signal.SIGTERM:  # one resume shows the stop was clean; SIGINT takes the same path
        assert main(["run", "--resume", str(out)]) == 0
        assert same_masks(reference_run, out)


# --- resume: the run as it was started, or a one-line refusal -------------------------------------------


def test_resume_refuses_an_edited_config(unfinished, capsys):
    config = unfinished / "config.yaml"
    config.write_text(config.read_text().replace("sparsity: 0.5", "sparsity: 0.9"))
    assert main(["run", "--resume", str(unfinished)]) == 2
    assert "differs from the one the run started with (prune.sparsity: 0.5 -> 0.9)" in fail_line(capsys)


def test_resume_refuses_flags_that_contradict_the_run(unfinished, capsys):
    argv = ["run", "--resume", str(unfinished), "--prune.sparsity", "0.9", "--prune.method", "magnitude"]
    assert main(argv) == 2
    line = fail_line(capsys)
    assert "prune.method 'magnitude' (run: 'sparsegpt')" in line and "prune.sparsity 0.9 (run: 0.5)" in line


def test_resume_with_repeated_flags_completes_and_leaves_no_temporaries(unfinished, reference_run):
    (unfinished / ".masks.safetensors.a1b2c3d4.tmp").write_bytes(b"half")  # a kill during a save leaves these
    (unfinished / "model").mkdir(exist_ok=True)
    (unfinished / "model" / ".model.safetensors.zz99yy88.tmp").write_bytes(b"half")
    assert main(["run", "--resume", str(unfinished), "--data.nsamples", "4"]) == 0
    assert not [p for p in unfinished.rglob("*.tmp")]
    assert read_json(unfinished / "summary.json")["resumed_from_layer"] == 2
    assert same_masks(reference_run, unfinished)


def test_resume_never_runs_code_named_by_the_run_folder(unfinished, custom_code_model, capsys):
    # A received run folder that asks for code execution in both of its records.
    config = unfinished / "config.yaml"
    config.write_text(config.read_text().replace("trust_remote_code: false", "trust_remote_code: true"))
    marker = read_json(unfinished / "lp_prune_run.json")
    marker["started_with"]["config"]["model"]["trust_remote_code"] = True
    (unfinished / "lp_prune_run.json").write_text(json.dumps(marker))
    assert main(["run", "--resume", str(unfinished)]) == 2
    assert "pass --model.trust_remote_code true" in fail_line(capsys)
    assert not (custom_code_model / EVIL_MARK).exists()


def test_resume_refuses_another_model(unfinished):
    saved = RunDirectory(unfinished).read_config()
    other = read_json(Path(saved.model.name) / "config.json") | {"num_hidden_layers": 5}
    model_config = type("Config", (), other)
    with pytest.raises(UserError, match=r"not the one the run started with \(num_hidden_layers: 3 -> 5[;)]"):
        check_resumable(RunDirectory(unfinished), saved, model_config)


def test_resume_refuses_a_model_folder_whose_weights_were_replaced(unfinished, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig

    saved = RunDirectory(unfinished).read_config()
    copy = tmp_path / "model-copy"
    shutil.copytree(saved.model.name, copy)
    check_resumable(RunDirectory(unfinished), saved, AutoConfig.from_pretrained(copy))  # same bytes: fine
    weights = load_file(copy / "model.safetensors")
    save_file({name: tensor + 1 for name, tensor in weights.items()}, copy / "model.safetensors", {"format": "pt"})
    with pytest.raises(UserError, match="its weight files differ from the ones the run started with"):
        check_resumable(RunDirectory(unfinished), saved, AutoConfig.from_pretrained(copy))


def test_a_saved_layer_of_another_run_of_the_same_shapes_is_refused(unfinished):
    from transformers import AutoModelForCausalLM

    marker = read_json(unfinished / "lp_prune_run.json")
    marker["started_with"]["config"]["data"]["seed"] = 7  # the layers now belong to another run's start
    (unfinished / "lp_prune_run.json").write_text(json.dumps(marker))
    model = AutoModelForCausalLM.from_pretrained(RunDirectory(unfinished).read_config().model.name)
    with pytest.raises(UserError, match=r"saved layer 0 .* was written by another run"):
        load_layer_results(unfinished, model)


def test_a_truncated_packed_mask_is_recomputed_not_replayed(unfinished, caplog):
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    path = unfinished / "progress" / "layer_000.safetensors"
    with safe_open(path, framework="pt") as saved:
        metadata, tensors = saved.metadata(), {name: saved.get_tensor(name) for name in saved.keys()}  # noqa: SIM118
    name = next(name for name in tensors if name.startswith("mask."))
    tensors[name] = tensors[name][:-1].clone()  # one packed byte short
    save_file(tensors, path, metadata)
    model = AutoModelForCausalLM.from_pretrained(RunDirectory(unfinished).read_config().model.name)
    assert load_layer_results(unfinished, model) == []
    assert "packed bytes, not" in caplog.text and "recomputing from layer 0" in caplog.text


def test_saved_layers_of_other_dimensions_are_refused_in_one_line(unfinished):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(RunDirectory(unfinished).read_config().model.name)
    config.intermediate_size *= 2
    with pytest.raises(UserError, match=r"saved layer 0 holds .* of another shape"):
        load_layer_results(unfinished, AutoModelForCausalLM.from_config(config))


def test_resume_without_a_marker_is_refused(unfinished, capsys):
    (unfinished / "lp_prune_run.json").unlink()
    assert main(["run", "--resume", str(unfinished)]) == 2
    assert "not an lp_prune run directory" in fail_line(capsys)


# --- damaged progress: recomputed from the last intact layer ---------------------------------------------


def _empty_state(progress: Path) -> None:
    (progress / "state.json").write_text("")


def _garbage_state(progress: Path) -> None:
    (progress / "state.json").write_text('{"layers_done": "many"')


def _missing_layer(progress: Path) -> None:
    (progress / "layer_001.safetensors").unlink()


def _truncated_layer(progress: Path) -> None:
    path = progress / "layer_001.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage_layer(progress: Path) -> None:
    (progress / "layer_001.safetensors").write_bytes(os.urandom(4096))


@pytest.mark.parametrize(
    ("damage", "intact"),
    [(_empty_state, 2), (_garbage_state, 2), (_missing_layer, 1), (_truncated_layer, 1), (_garbage_layer, 1)],
)
def test_damaged_progress_keeps_the_intact_layers(unfinished, caplog, damage, intact):
    from transformers import AutoModelForCausalLM

    damage(unfinished / "progress")
    model = AutoModelForCausalLM.from_pretrained(RunDirectory(unfinished).read_config().model.name)
    restored = load_layer_results(unfinished, model)
    assert [result.layer for result in restored] == list(range(intact))
    message = "counting the saved layer files instead" if intact == 2 else "recomputing from layer 1"
    assert message in caplog.text


def test_a_damaged_layer_is_recomputed_to_the_uninterrupted_result(unfinished, reference_run):
    _truncated_layer(unfinished / "progress")
    assert main(["run", "--resume", str(unfinished)]) == 0
    assert read_json(unfinished / "summary.json")["resumed_from_layer"] == 1
    assert same_masks(reference_run, unfinished)


# --- saving ----------------------------------------------------------------------------------------------


def test_disk_full_while_saving_is_one_line_and_stays_resumable(unfinished, reference_run, monkeypatch, capsys):
    import errno

    import lp_prune.run_writer

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lp_prune.run_writer, "save_masks", full_disk)
    assert main(["run", "--resume", str(unfinished)]) == 2
    assert "No space left on device; the pruned layers are kept" in fail_line(capsys)
    assert RunDirectory(unfinished).status() == "RUNNING" and (unfinished / "progress").is_dir()
    monkeypatch.undo()
    assert main(["run", "--resume", str(unfinished)]) == 0
    assert same_masks(reference_run, unfinished)


def test_overwrite_removes_what_a_run_wrote_and_never_follows_a_link(reference_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(reference_run, run)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run / "model", elsewhere)
    (run / "model").symlink_to(elsewhere, target_is_directory=True)
    (run / "lm_eval_results.json").write_text('{"pruned": {"stale": true}}')
    kept = listing(elsewhere)
    RunDirectory.create(run, overwrite=True)
    assert listing(elsewhere) == kept  # the link went, not what it points to
    assert not (run / "model").exists() and not (run / "lm_eval_results.json").exists()
    assert not (run / "summary.json").exists() and RunDirectory(run).status() is None


def test_mask_files_are_byte_reproducible_across_processes(tmp_path):
    script = textwrap.dedent("""
        import sys, torch
        from lp_prune.tracking import save_masks
        generator = torch.Generator().manual_seed(0)
        masks = {f"model.layers.{i}.proj": torch.rand(8, 12, generator=generator) > 0.5 for i in range(3)}
        save_masks(sys.argv[1], masks)
    """)
    files = []
    for attempt in range(3):  # safetensors' own writer orders its metadata differently in each process
        folder = tmp_path / str(attempt)
        subprocess.run([sys.executable, "-c", script, str(folder)], check=True)
        files.append((folder / "masks.safetensors").read_bytes())
    assert all(data == files[0] for data in files)


# --- YAML read with limits ------------------------------------------------------------------------------

BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (BOMB, "expands to more than 100,000 values"),
        ("seed: 1\nseed: 2\n", "key 'seed' appears twice (line 2)"),
        ("model:\n  name: " + "x" * (1 << 21) + "\n", "a YAML file is limited to 1,048,576"),
        (b"\x92\x00\xff binary", "not a text file"),
    ],
    ids=["alias-bomb", "duplicate-key", "huge-value", "binary"],
)
def test_config_files_are_read_with_limits(tiny_model_dir, tmp_path, capsys, content, message):
    path = tmp_path / "config.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main([*run_args(tiny_model_dir, tmp_path / "run"), "--config", str(path)]) == 2
    assert message in fail_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_run_folders_config_is_read_with_limits(unfinished, capsys):
    (unfinished / "config.yaml").write_text(BOMB)
    assert main(["run", "--resume", str(unfinished)]) == 2
    assert "expands to more than 100,000 values" in fail_line(capsys)


def test_yaml_merge_keys_may_override_what_they_bring():
    from lp_prune.safe_yaml import load_yaml_text

    assert load_yaml_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n")["other"] == {"x": 3, "y": 2}


def test_a_run_that_fails_before_its_first_layer_leaves_no_folder(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from conftest import save_tiny_model

    folder = save_tiny_model(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight[0, 0] = float("nan")
    model.save_pretrained(folder)
    out = tmp_path / "new"
    assert main(run_args(folder, out)) == 2
    assert "the weights hold NaN or inf" in fail_line(capsys)
    assert not out.exists()  # nothing RUNNING left behind
    kept = tmp_path / "existing"
    RunDirectory.create(kept)
    assert main(run_args(folder, kept)) == 2
    assert RunDirectory(kept).is_marked()  # a folder that was there before is not removed
