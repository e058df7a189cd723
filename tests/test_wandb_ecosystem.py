"""W&B and the command line as a user of the field expects them: per-layer summaries, one W&B run per
resumed run, job types, lineage and panel-safe keys, compare's own report folder, `--version`, and
W&B's `${args_no_hyphens}` sweep lines."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from lp_prune.cli import build_parser, main, with_hyphens
from lp_prune.config import run_config_from
from lp_prune.tracking.run_dir import RunDirectory
from lp_prune.tracking.wandb_analysis import panel_key, panel_keys, use_artifacts
from lp_prune.tracking.wandb_logger import artifact_name, layer_summary
from wandb_offline import closed_log, find_offline_runs, iter_records, read_config, read_history, read_summary

SMALL = ["--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2", "--data.eval_windows", "2"]
SMALL += ["--data.eval_seqlen", "32", "--data.eval_languages", "[en, sw]"]
UNSAFE = (" ", "=", ".")


def run_record(run_folder: Path):
    return next(r.run for r in iter_records(closed_log(run_folder)) if r.WhichOneof("record_type") == "run")


def logged_ids(wandb_dir: Path) -> set[str]:
    """The run id of every offline-run folder (its name ends in it) and of its run record."""
    ids = set()
    for folder in find_offline_runs(wandb_dir):
        ids.add(folder.name.rsplit("-", 1)[-1])
        ids |= {r.run.run_id for r in iter_records(folder) if r.WhichOneof("record_type") == "run"}
    return ids


# --- per-layer metrics: mean (and worst SNR) in the summary, `layer` only the axis -------------------


def test_summary_holds_layer_means_and_worst_snr_not_the_last_layer(tiny_model_dir, tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("WANDB_SILENT", raising=False)  # wandb's own warnings are shown
    out = tmp_path / "run"
    args = ["--prune.method", "wanda", "--wandb.mode", "offline"]
    assert main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, *args]) == 0
    assert "anonymous" not in capfd.readouterr().err  # no deprecated setting passed to wandb.init
    (run,) = find_offline_runs(out / "wandb")
    rows = [row for row in read_history(closed_log(run)) if "layer" in row]
    summary = read_summary(run)
    assert [row["layer"] for row in rows] == list(range(len(rows))) and len(rows) > 1
    per_layer = {key for row in rows for key in row if key.startswith("prune/")}
    assert "prune/snr_db/o_proj" in per_layer and "prune/layer_snr_db_mean" in per_layer
    for key in per_layer:
        logged = [row[key] for row in rows]
        assert summary[f"{key}/mean"] == pytest.approx(statistics.fmean(logged)), key
        assert key not in summary, key  # no last-layer value under the metric's own name
        if "snr_db" in key:
            assert summary[f"{key}/min"] == pytest.approx(min(logged)), key
        else:
            assert f"{key}/min" not in summary
    assert "layer" not in summary
    assert run_record(run).job_type == "prune"
    # The W&B run's id and the masks artifact it logged are recorded in the run directory.
    record = RunDirectory(out).wandb_record()
    assert record == {"id": run.name.rsplit("-", 1)[-1], "masks_artifact": artifact_name("masks", "run")}


def test_layer_summary_of_rows():
    rows = [
        {"layer": 0, "prune/snr_db/q_proj": 20.0, "prune/sparsity/q_proj": 0.5},
        {"layer": 1, "prune/snr_db/q_proj": 10.0, "prune/sparsity/q_proj": 0.7},
        {"layer": 2, "prune/snr_db/q_proj": math.inf, "prune/sparsity/q_proj": 0.6},
    ]
    summary = layer_summary(rows)
    assert summary["prune/snr_db/q_proj/min"] == 10.0
    assert summary["prune/snr_db/q_proj/mean"] == math.inf  # a layer without error has infinite SNR
    assert summary["prune/sparsity/q_proj/mean"] == pytest.approx(0.6)
    assert set(summary) == {"prune/snr_db/q_proj/min", "prune/snr_db/q_proj/mean", "prune/sparsity/q_proj/mean"}
    nan = layer_summary([{"prune/snr_db/v_proj": math.nan}, {"prune/snr_db/v_proj": 3.0}])
    assert math.isnan(nan["prune/snr_db/v_proj/min"]) and math.isnan(nan["prune/snr_db/v_proj/mean"])


# --- the masks artifact: its files in the run directory --------------------------------------------


def masks_artifact_entries(run_folder: Path) -> list:
    return [
        entry
        for record in iter_records(closed_log(run_folder))
        if record.WhichOneof("record_type") == "artifact" and record.artifact.type == "pruning-masks"
        for entry in record.artifact.manifest.contents
    ]


def test_masks_artifact_files_stay_in_the_run_directory_and_travel_with_it(tiny_model_dir, tmp_path, monkeypatch):
    import base64
    import hashlib
    import shutil

    staging = tmp_path / "wandb-data"  # where W&B stages copies of logged files (WANDB_DATA_DIR)
    monkeypatch.setenv("WANDB_DATA_DIR", str(staging))
    out = tmp_path / "run"
    assert main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, "--wandb.mode", "offline"]) == 0
    # Nothing the artifact holds is copied outside the run (W&B stages its own table files there).
    staged = [p for p in staging.rglob("*") if p.is_file()]
    assert all(json.loads(p.read_text())["_type"] == "table" for p in staged), staged
    (run,) = find_offline_runs(out / "wandb")
    entries = {entry.path: entry for entry in masks_artifact_entries(run)}
    assert {"summary.json", "config.yaml"} < set(entries) and any(name.startswith("masks") for name in entries)
    for entry in entries.values():
        assert Path(entry.local_path).resolve().is_relative_to(out.resolve()), entry.local_path
    # `lp-prune eval` rewrites summary.json later: the artifact's copy keeps what was logged.
    (out / "summary.json").write_text("{}")
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    for entry in entries.values():
        copy = moved / Path(entry.local_path).resolve().relative_to(out.resolve())
        digest = base64.b64encode(hashlib.md5(copy.read_bytes()).digest()).decode()
        assert digest == entry.digest, entry.path


# --- resume: the same W&B run -------------------------------------------------------------------------


def test_resumed_run_logs_under_the_same_wandb_id(tiny_model_dir, tmp_path, monkeypatch):
    from test_reliability import run_args, start_and_kill_after

    out = tmp_path / "killed"
    # Its own wandb service, as for a run started from a shell (pytest's would keep the killed run open).
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    start_and_kill_after(0, run_args(tiny_model_dir, out, "wanda"), out)
    monkeypatch.undo()
    (killed,) = find_offline_runs(out / "wandb")
    first_id = RunDirectory(out).wandb_record()["id"]
    assert killed.name.endswith(f"-{first_id}")

    assert main(["run", "--resume", str(out)]) == 0
    folders = find_offline_runs(out / "wandb")
    assert len(folders) == 2  # the killed part and the resumed part: `wandb sync` uploads both into one run
    assert logged_ids(out / "wandb") == {first_id}
    assert RunDirectory(out).wandb_record()["id"] == first_id
    # The summary covers every layer, the ones logged before the kill as well.
    rows = [row for folder in folders for row in read_history(folder) if "layer" in row]
    layers = sorted({row["layer"] for row in rows})
    assert layers == list(range(len(layers))) and len(layers) > 1
    last = {row["layer"]: row["prune/snr_db/o_proj"] for row in rows}  # a layer logged twice: its last row
    summary = read_summary(closed_log(folders[-1]))
    assert summary["prune/snr_db/o_proj/mean"] == pytest.approx(statistics.fmean(last.values()))
    assert summary["prune/snr_db/o_proj/min"] == pytest.approx(min(last.values()))


def test_resume_whose_wandb_run_is_still_open_elsewhere_logs_a_new_run(tiny_model_dir, tmp_path, monkeypatch, caplog):
    import wandb

    from test_reliability import run_args, start_and_kill_after

    out = tmp_path / "killed"
    wandb.setup()  # this process's wandb service, which the killed run then shares and keeps its run open in
    start_and_kill_after(0, run_args(tiny_model_dir, out, "wanda"), out)
    first_id = RunDirectory(out).wandb_record()["id"]
    assert main(["run", "--resume", str(out)]) == 0
    assert f"W&B run {first_id} is still open in another process" in caplog.text
    ids = {folder.name.rsplit("-", 1)[-1] for folder in find_offline_runs(out / "wandb")}
    assert first_id in ids and len(ids) == 2
    assert RunDirectory(out).wandb_record()["id"] in ids - {first_id}


def test_a_new_run_in_the_same_folder_gets_a_new_wandb_id(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, "--eval.perplexity", "false"]
    assert main(argv) == 0
    first = RunDirectory(out).wandb_record()["id"]
    assert main([*argv, "--overwrite", "true"]) == 0
    assert RunDirectory(out).wandb_record()["id"] != first


# --- compare and analyze: job types, options, lineage, panel-safe keys --------------------------------


@pytest.fixture(scope="module")
def two_runs(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("eco") / "langs"
    for lang in ("en", "sw"):
        args = [
            "run", "--model.name", str(tiny_model_dir), "--out", str(root / lang), "--prune.method", "wanda",
            "--data.calibration_language", lang, *SMALL, "--wandb.group", "g", "--wandb.mode", "offline",
        ]  # fmt: skip
        assert main(args) == 0
    return root


def logged_keys(run_folder: Path) -> set[str]:
    """The keys of the history rows as logged (a table's own fields, nested under its key, left out)."""
    keys = set()
    for record in iter_records(closed_log(run_folder)):
        if record.WhichOneof("record_type") == "history":
            keys |= {item.nested_key[0] if item.nested_key else item.key for item in record.history.item}
    return {key for key in keys if not key.startswith("_")}


def assert_panel_safe(keys):
    for key in keys:
        for segment in key.split("/"):
            assert segment and not any(char in segment for char in UNSAFE), key


def test_compare_run_has_its_job_type_options_inputs_and_safe_keys(two_runs, tmp_path):
    out = tmp_path / "report"
    assert main(["compare", str(two_runs), "--out", str(out)]) == 0
    (run,) = find_offline_runs(out / "wandb")
    info = run_record(run)
    assert (info.job_type, info.run_group, info.display_name) == ("compare", "g", "compare-langs")
    config = read_config(run)
    assert config["runs"] == [str(two_runs)] and config["out"] == str(out) and config["no_wandb"] is False
    assert config["input_artifacts"] == [f"{artifact_name('masks', lang)}:latest" for lang in ("en", "sw")]
    keys = logged_keys(run)
    settings = [key for key in keys if key.startswith("perplexity/")]
    assert settings and all("0_5" in key for key in settings)  # the setting's slug (sparsity 0.5), '.' replaced
    assert_panel_safe(keys)


def test_analyze_run_has_its_job_type_options_and_inputs(two_runs, tmp_path):
    out = tmp_path / "analysis"
    args = ["analyze", str(two_runs), "--out", str(out), "--languages", "[en, sw]", "--windows", "1"]
    assert main([*args, "--seqlen", "16", "--batch_size", "1"]) == 0
    (run,) = find_offline_runs(out / "wandb")
    assert run_record(run).job_type == "analyze"
    config = read_config(run)
    assert config["runs"] == [str(two_runs)] and config["windows"] == 1 and config["languages"] == ["en", "sw"]
    assert config["input_artifacts"] == [f"{artifact_name('masks', lang)}:latest" for lang in ("en", "sw")]
    assert_panel_safe(logged_keys(run))


def test_panel_keys():
    assert panel_key("perplexity/wanda_unstructured_s0.5_n4x32") == "perplexity/wanda_unstructured_s0_5_n4x32"
    assert panel_key("iou/group=a b/x.y") == "iou/group_a_b/x_y"
    assert panel_key("snr_db/all_layers") == "snr_db/all_layers"
    safe = panel_keys({"a/s0.5": 1, "a/s0_5": 2})
    assert len(safe) == 2 and safe["a/s0_5"] == 1 and 2 in safe.values()  # nothing overwritten


class FakeConfig(dict):
    def update(self, values, allow_val_change=False):
        super().update(values)


class FakeRun:
    """wandb's Run as use_artifacts sees it: offline, config.update, use_artifact."""

    def __init__(self, offline):
        self.offline, self.used, self.config = offline, [], FakeConfig()

    def use_artifact(self, artifact_or_name, type=None, aliases=None, use_as=None):
        self.used.append((artifact_or_name, type))


@pytest.mark.parametrize("offline", [False, True])
def test_inputs_are_used_online_and_kept_in_the_config_offline(offline):
    run = FakeRun(offline)
    use_artifacts(run, ["masks-en:latest", "ent/proj/masks-sw:v3"])
    assert run.config == {"input_artifacts": ["masks-en:latest", "ent/proj/masks-sw:v3"]}
    expected = [] if offline else [("masks-en:latest", "pruning-masks"), ("ent/proj/masks-sw:v3", "pruning-masks")]
    assert run.used == expected  # wandb 0.31 raises TypeError for use_artifact offline


# --- compare's report folder ---------------------------------------------------------------------------


def test_compare_writes_into_a_folder_of_its_own_by_default(two_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(two_runs), "--no_wandb"]) == 0
    report = tmp_path / "compare" / "langs"
    assert (report / "report.html").is_file()
    assert str(Path("compare") / "langs" / "report.html") in capsys.readouterr().out
    assert not (two_runs / "compare").exists()
    assert main(["compare", str(two_runs / "en"), str(two_runs / "sw"), "--no_wandb"]) == 0
    assert (tmp_path / "compare" / "en+sw" / "report.html").is_file()


@pytest.mark.parametrize("inside", [".", "reports/x"])
def test_compare_refuses_an_out_inside_a_run_directory(two_runs, tmp_path, capsys, inside):
    out = two_runs / "en" / inside
    before = sorted(p.name for p in (two_runs / "en").iterdir())
    assert main(["compare", str(two_runs), "--out", str(out), "--no_wandb"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"lies inside the run directory {two_runs / 'en'}" in err
    assert sorted(p.name for p in (two_runs / "en").iterdir()) == before  # nothing written


def test_compare_refuses_a_default_folder_inside_a_run_directory(two_runs, monkeypatch, capsys):
    monkeypatch.chdir(two_runs / "sw")
    assert main(["compare", str(two_runs / "en"), "--no_wandb"]) == 2
    assert "the default report folder compare/en lies inside the run directory" in capsys.readouterr().err
    assert not (two_runs / "sw" / "compare").exists()


def test_comparison_names(tmp_path):
    from lp_prune.commands.compare import comparison_name

    assert comparison_name([str(tmp_path / "languages-default")]) == "languages-default"
    assert comparison_name([str(tmp_path / "a"), str(tmp_path / "b c")]) == "a+b_c"
    same = comparison_name([str(tmp_path / "x" / "en"), str(tmp_path / "y" / "en")])
    assert same.startswith("en+1-more-") and same != comparison_name([str(tmp_path / "z" / "en"), str(tmp_path / "en")])
    many = comparison_name([str(tmp_path / f"run-{i:03d}-abcdefgh") for i in range(10)])
    assert len(many) <= 60 and many.startswith("run-000-abcdefgh+9-more-")


# --- --version ------------------------------------------------------------------------------------------


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"lp-prune {version('lp-prune')}\n"
    done = subprocess.run([sys.executable, "-m", "lp_prune", "--version"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"lp-prune {version('lp-prune')}"


# --- ${args_no_hyphens} ---------------------------------------------------------------------------------

PARAMS = {
    "prune.method": "wanda",
    "data.calibration_language": "sw",
    "data.nsamples": 16,
    "prune.sparsity": 0.6,
    "seed": 3,
    "save_model": True,
}


def parsed_run_config(argv: list[str]):
    parser = build_parser()
    parsed = parser.instantiate_classes(parser.parse_args(with_hyphens(argv)))
    return run_config_from(parsed["run"])


def test_args_no_hyphens_lines_parse_like_args_lines():
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    macros = create_sweep_command_args({"args": {key: {"value": value} for key, value in PARAMS.items()}})

    def line(macro: str) -> list[str]:  # wandb's own expansion, as its agent does it
        command = create_sweep_command(["lp-prune", "run", "${" + macro + "}"])
        return [word for part in command for word in (macros[macro] if part == "${" + macro + "}" else [part])]

    assert line("args_no_hyphens")[2:4] == ["prune.method=wanda", "data.calibration_language=sw"]
    with_flags, without = parsed_run_config(line("args")[1:]), parsed_run_config(line("args_no_hyphens")[1:])
    assert without == with_flags
    assert (without.prune.method.name, without.data.calibration_language, without.seed) == ("wanda", "sw", 3)
    assert (without.data.nsamples, without.prune.sparsity, without.save_model) == (16, 0.6, True)


def test_only_config_keys_lose_nothing_but_their_missing_hyphens():
    argv = ["run", "prune.method=wanda", "--wandb.name", "prune.method=x", "other=1", "--out=o"]
    assert with_hyphens(argv) == ["run", "--prune.method=wanda", "--wandb.name", "prune.method=x", "other=1", "--out=o"]
    assert with_hyphens(["compare", "prune.method=wanda"]) == ["compare", "prune.method=wanda"]
    assert with_hyphens(["--debug", "estimate", "seed=1"]) == ["--debug", "estimate", "--seed=1"]


def test_a_sweep_command_with_args_no_hyphens_runs_locally(tmp_path):
    from lp_prune.sweeps.expand import expand, load_sweep
    from lp_prune.sweeps.runner import local_argv, plan, validate_runs

    path = tmp_path / "s.yaml"
    sweep_file = {
        "name": "nohyph",
        "method": "grid",
        "command": ["${env}", "lp-prune", "run", "${args_no_hyphens}"],
        "parameters": {"prune.method": {"values": ["wanda", "magnitude"]}, "data.nsamples": {"value": 8}},
    }
    path.write_text(json.dumps(sweep_file))
    sweep = load_sweep(path)
    runs = plan(sweep, expand(sweep), tmp_path / "root")
    validate_runs(runs, sweep)
    argv = local_argv(runs[0], sweep)
    assert "--prune.method=wanda" in argv and "--data.nsamples=8" in argv
    assert not any(word.startswith(("prune.", "data.")) for word in argv)


# --- Lightning's output: bars named for the work, each log line once --------------------------------


def test_progress_bars_name_the_layer_and_language_never_a_validation_dataloader(tiny_model_dir, tmp_path, capfd):
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, "--wandb.mode", "disabled"]
    assert main(argv) == 0
    shown = capfd.readouterr()
    bars = (shown.out + shown.err).replace("\r", "\n")
    assert "Validation" not in bars and "DataLoader" not in bars
    assert "Layer 1/3 collecting statistics" in bars and "Layer 3/3 propagating" in bars
    assert "Perplexity en" in bars and "Perplexity sw" in bars


def test_library_log_lines_print_once():
    code = (
        "import logging\n"
        "from lp_prune.cli import _quiet_libraries\n"
        "_quiet_libraries()\n"
        "logging.getLogger('lightning.fabric.utilities.distributed').info('probe-line')\n"
        "logging.getLogger('lp_prune.pipeline').info('own-line')\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stderr.count("probe-line") == 1, shown.stderr
    assert shown.stderr.count("own-line") == 1, shown.stderr


def test_analyze_of_a_run_directory_writes_outside_it(two_runs, tmp_path, monkeypatch, capsys):
    run = next(p for p in sorted(two_runs.iterdir()) if (p / "status").exists())
    monkeypatch.chdir(tmp_path)
    args = ["analyze", str(run), "--languages", "[en, sw]", "--windows", "1", "--seqlen", "16", "--no_wandb"]
    assert main(args) == 0
    assert not (run / "analysis").exists()
    assert (tmp_path / "analysis" / run.name / "analysis.json").is_file()
    assert main([*args, "--out", str(run / "inside")]) == 2
    assert "lies inside the run directory" in capsys.readouterr().err
