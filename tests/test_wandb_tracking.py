"""W&B as sweep agents and the UI use it: sweep files name their project, the run config is flat
(the sweep's dotted keys), online detection follows wandb's own credentials for any host, and
`lp-prune compare wandb:...` builds the same report from W&B runs (against a fake of the public API:
there is no W&B server offline)."""

from __future__ import annotations

import inspect
import json
import logging
import shutil
import socket
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from lp_prune.cli import main
from lp_prune.config import RunConfig, WandbConfig
from lp_prune.config.hub import HUB
from lp_prune.config.method_keys import method_settings
from lp_prune.errors import UserError
from lp_prune.reporting import format_run_results, wandb_line
from lp_prune.sweeps.expand import load_sweep
from lp_prune.sweeps.runner import is_config_key, local_argv, plan, validate_runs
from lp_prune.tracking.wandb_logger import (
    credentials_source,
    flat_config,
    nested_config,
    resolve_mode,
    wandb_host,
)
from lp_prune.tracking.wandb_runs import parse_source, summary_from_wandb
from wandb_offline import closed_log, find_offline_runs, iter_records, read_config, read_summary

SWEEPS = sorted((HUB / "sweeps").glob("*.yaml"))
SMALL = ["--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2", "--data.eval_windows", "2"]
SMALL += ["--data.eval_seqlen", "32", "--data.eval_languages", "[en, sw]"]
CUSTOM_HOST = "https://wandb.example.org"
API_KEY = "local-" + "a1" * 20  # the format of a self-hosted server's key


# --- sweep files ----------------------------------------------------------------------------------


def test_sweep_files_exist():
    assert len(SWEEPS) >= 5


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_file_names_its_project_and_still_runs_locally(path, tmp_path):
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw.get("project"), str) and raw["project"] == "lp_prune"  # the key `wandb sweep` reads
    sweep = load_sweep(path)
    assert sweep.project == "lp_prune"
    runs = plan(sweep, [{key: _first_value(spec) for key, spec in sweep.parameters.items()}], tmp_path)
    argv = local_argv(runs[0], sweep)
    assert "--wandb.project=lp_prune" in argv  # as a W&B sweep would: its project wins over the run's
    validate_runs(runs, sweep)  # the key does not get in the way of the local runner


def _first_value(spec: dict) -> object:
    if "values" in spec:
        return spec["values"][0]
    return spec.get("value", spec.get("min"))


# --- flat config ----------------------------------------------------------------------------------


def test_flat_config_uses_dotted_keys_and_round_trips():
    nested = {"prune": {"method": "wanda", "owl": False}, "data": {"files": {}, "eval_languages": ["en", "sw"]}}
    nested["data"]["nested"] = {"a": {"b": 1}}
    nested["seed"] = 3
    flat = flat_config(nested)
    assert flat == {
        "prune.method": "wanda",
        "prune.owl": False,
        "data.files": {},
        "data.eval_languages": ["en", "sw"],
        "data.nested.a.b": 1,
        "seed": 3,
    }
    assert nested_config(flat) == nested
    assert nested_config({**flat, "_wandb": {"x": 1}}) == nested  # W&B's own keys are dropped


def test_every_flat_config_key_is_a_sweep_parameter_key():
    config = RunConfig()
    config.data.files = {"en": "a.txt"}
    flat = flat_config(config.to_dict())
    assert flat["data.files.en"] == "a.txt"
    assert all(is_config_key(key) for key in flat), [key for key in flat if not is_config_key(key)]


def test_offline_run_logs_its_config_flat(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import os

    monkeypatch.delenv("WANDB_SILENT", raising=False)
    out = tmp_path / "run"
    args = ["--prune.method", "wanda", "--data.calibration_language", "sw", "--wandb.mode", "offline"]
    assert main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, *args]) == 0
    assert "WANDB_SILENT" not in os.environ  # the user sees wandb's own lines (the run's URL)
    (run,) = find_offline_runs(out / "wandb")
    config = read_config(closed_log(run))
    assert config["prune.method"] == "wanda"
    assert config["data.calibration_language"] == "sw"
    assert config["data.eval_languages"] == ["en", "sw"]
    assert config["model.name"] == str(tiny_model_dir)
    assert not {"prune", "data", "model", "eval", "wandb"} & set(config)  # no nested duplicates
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert nested_config(config) == saved
    # Every parameter of the shipped sweeps is one of the logged columns, or a setting of another method
    # (wanda has no prune.bits: a run logs its own method's settings). (`config` picks a recipe file
    # passed as a later --config: its keys are the columns.)
    others = {f"prune.{key}" for key in method_settings()}
    for path in SWEEPS:
        assert set(load_sweep(path).parameters) - {"config"} - others <= set(config), path.name
    assert not others & set(config)
    # The end of the run: the results table and the exact command that uploads the offline run.
    line = wandb_line(out)
    assert line == f"W&B (offline): wandb sync {run}"
    summary = json.loads((out / "summary.json").read_text())
    text = format_run_results(summary, out, line)
    for lang in ("en", "sw"):
        dense, pruned = summary["perplexity"]["dense"][lang], summary["perplexity"]["pruned"][lang]
        row = next(r.split() for r in text.splitlines() if r.split()[:1] == [lang])
        assert row[1:] == [f"{dense:.2f}", f"{pruned:.2f}", f"{pruned / dense:.3f}x"]
    assert text.splitlines()[-2:] == [f"Run directory: {out}", line]
    assert text in capsys.readouterr().out  # what `lp-prune run` printed when it ended


# --- online or offline --------------------------------------------------------------------------------


@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    """No credentials anywhere but what the test writes; every network connection refused."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield tmp_path
    assert attempts == []


def write_netrc(folder: Path, host: str) -> None:
    machine = host.removeprefix("https://")
    (folder / "netrc").write_text(f"machine {machine}\n  login user\n  password {API_KEY}\n")
    (folder / "netrc").chmod(0o600)


def test_key_stored_for_a_self_hosted_server_counts(wandb_home, monkeypatch):
    write_netrc(wandb_home, CUSTOM_HOST)
    assert credentials_source() is None  # wandb's default host has no key here
    assert resolve_mode(WandbConfig()) == "offline"
    monkeypatch.setenv("WANDB_BASE_URL", CUSTOM_HOST)
    assert wandb_host() == CUSTOM_HOST
    assert credentials_source() == "netrc"
    assert resolve_mode(WandbConfig()) == "online"
    assert resolve_mode(WandbConfig(mode="offline")) == "offline"  # the config wins


def test_host_saved_by_wandb_login_counts(wandb_home):
    write_netrc(wandb_home, CUSTOM_HOST)
    folder = wandb_home / "wandb-config"
    folder.mkdir()
    (folder / "settings").write_text(f"[default]\nbase_url = {CUSTOM_HOST}\n")  # what `wandb login --host` writes
    assert wandb_host() == CUSTOM_HOST
    assert credentials_source() == "netrc"


def test_api_key_variable_counts_for_any_host(wandb_home, monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", CUSTOM_HOST)
    assert credentials_source() is None
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    assert credentials_source() == "WANDB_API_KEY"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(WandbConfig()) == "disabled"  # the user's WANDB_MODE wins over credentials


def test_malformed_key_means_offline_with_a_warning(wandb_home, monkeypatch, caplog):
    (wandb_home / "netrc").write_text(f"machine {CUSTOM_HOST.removeprefix('https://')} login user password short\n")
    monkeypatch.setenv("WANDB_BASE_URL", CUSTOM_HOST)
    with caplog.at_level(logging.WARNING):
        assert credentials_source() is None
    assert "cannot be used" in caplog.text


# --- compare wandb: against a fake public API ----------------------------------------------------------


class FakeArtifact:
    """wandb.Artifact as Run.logged_artifacts() yields it: a type and download(root)."""

    def __init__(self, files: list[Path], kind: str = "pruning-masks") -> None:
        self.type = kind
        self.files = files
        self.downloads = 0

    def download(self, root=None, allow_missing_references=False, skip_cache=None, path_prefix=None, multipart=None):
        self.downloads += 1
        Path(root).mkdir(parents=True, exist_ok=True)
        for path in self.files:
            shutil.copy(path, Path(root) / path.name)
        return str(root)


class FakeFile:
    """wandb.apis.public.File: download(root) writes root/<name> and returns it opened."""

    def __init__(self, name: str, source: Path) -> None:
        self.name, self.source = name, source

    def download(self, root=".", replace=False, exist_ok=False, api=None):
        target = Path(root) / self.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.source, target)
        return open(target)  # the caller closes it, as with wandb's


class FakeRun:
    """wandb.apis.public.Run: id, name, state, group, config (flat, as logged), summary, artifacts, files."""

    def __init__(self, run_id, name, state, group, config, summary, artifacts, files_dir) -> None:
        self.id, self.name, self.state, self.group = run_id, name, state, group
        self.config, self.summary = config, summary
        self.artifacts, self.files_dir = artifacts, files_dir

    def logged_artifacts(self, per_page=100):
        return iter(self.artifacts)

    def file(self, name):
        return FakeFile(name, self.files_dir / name)


class FakeSweep:
    def __init__(self, runs) -> None:
        self.runs = runs


class FakeApi:
    """wandb.Api with the calls compare makes recorded."""

    runs_by_source: ClassVar[list] = []
    calls: ClassVar[list] = []

    def __init__(self, overrides=None, timeout=None, api_key=None) -> None:
        pass

    def sweep(self, path=""):
        FakeApi.calls.append(("sweep", path))
        return FakeSweep(list(FakeApi.runs_by_source))

    def runs(self, path=None, filters=None, order="+created_at", per_page=50, include_sweeps=False, lazy=True):
        FakeApi.calls.append(("runs", path, filters))
        return iter(list(FakeApi.runs_by_source))


def test_fakes_have_the_signatures_of_wandb_0_31():
    import wandb
    from wandb.apis.public import File, Run
    from wandb.sdk.artifacts.artifact import Artifact

    pairs = [
        (FakeApi.__init__, wandb.Api.__init__),
        (FakeApi.sweep, wandb.Api.sweep),
        (FakeApi.runs, wandb.Api.runs),
        (FakeRun.logged_artifacts, Run.logged_artifacts),
        (FakeRun.file, Run.file),
        (FakeArtifact.download, Artifact.download),
        (FakeFile.download, File.download),
    ]
    for fake, real in pairs:
        assert list(inspect.signature(fake).parameters) == list(inspect.signature(real).parameters), real
    for name in ("id", "name", "state", "config", "summary", "url"):
        assert hasattr(Run, name)


@pytest.fixture(scope="module")
def logged_runs(tiny_model_dir, tmp_path_factory):
    """Two real runs (en, sw) logged offline in group g: their run directories and W&B run folders."""
    root = tmp_path_factory.mktemp("wandb-runs")
    runs = {}
    for lang in ("en", "sw"):
        out = root / lang
        args = ["--data.calibration_language", lang, "--wandb.mode", "offline", "--wandb.group", "g"]
        assert main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, *args]) == 0
        (wandb_run,) = find_offline_runs(out / "wandb")
        runs[lang] = (out, wandb_run)
    return runs


def artifact_files(wandb_run: Path) -> set[str]:
    """Names of the files the run's pruning-masks artifact holds (from its manifest in the run log)."""
    names = set()
    for record in iter_records(closed_log(wandb_run)):
        if record.WhichOneof("record_type") == "artifact" and record.artifact.type == "pruning-masks":
            names |= {entry.path for entry in record.artifact.manifest.contents}
    return names


def fake_runs(logged_runs, with_run_files: bool) -> list[FakeRun]:
    fakes = []
    for index, (lang, (out, wandb_run)) in enumerate(logged_runs.items()):
        summary = read_summary(closed_log(wandb_run))
        config = read_config(closed_log(wandb_run))
        files = [out / "masks.safetensors"]
        if with_run_files:  # what log_masks_artifact puts in the artifact now
            assert artifact_files(wandb_run) == {"masks.safetensors", "summary.json", "config.yaml"}
            files += [out / "summary.json", out / "config.yaml"]
        artifacts = [FakeArtifact([out / "config.yaml"], kind="run_table"), FakeArtifact(files)]
        files_dir = wandb_run / "files"
        fakes.append(FakeRun(f"id{index}", f"run-{lang}", "finished", "g", config, summary, artifacts, files_dir))
    fakes.append(FakeRun("idx", "crashed", "crashed", "g", {}, {}, [], Path()))  # skipped: not finished
    fakes.append(FakeRun("idy", "no-masks", "finished", "g", {}, {}, [], Path()))  # skipped: no artifact
    return fakes


def local_tables(logged_runs, tmp_path) -> dict:
    out = tmp_path / "local-report"
    folders = [str(run_dir) for run_dir, _ in logged_runs.values()]
    assert main(["compare", *folders, "--out", str(out), "--no_wandb"]) == 0
    return json.loads((out / "tables.json").read_text())


def analysis_run_info(folder: Path) -> dict:
    (analysis,) = find_offline_runs(folder / "wandb")
    for record in iter_records(closed_log(analysis)):
        if record.WhichOneof("record_type") == "run":
            run = record.run
            return {"entity": run.entity, "project": run.project, "group": run.run_group, "job": run.job_type}
    raise AssertionError("no run record")


def test_compare_a_wandb_sweep_gives_the_local_report(logged_runs, tmp_path, monkeypatch, capsys, caplog):
    import wandb

    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setattr(FakeApi, "runs_by_source", fake_runs(logged_runs, with_run_files=True))
    monkeypatch.setattr(FakeApi, "calls", [])
    download, out = tmp_path / "download", tmp_path / "report"
    with caplog.at_level(logging.WARNING):
        assert main(["compare", "wandb:ent/proj/sw33p", "--download_dir", str(download), "--out", str(out)]) == 0
    assert FakeApi.calls == [("sweep", "ent/proj/sw33p")]
    assert "skipped 2 W&B runs" in caplog.text and "state crashed" in caplog.text
    folder = download / "ent" / "proj" / "sweep-sw33p"
    assert sorted(p.name for p in folder.iterdir()) == ["run-en-id0", "run-sw-id1"]
    for lang, index in (("en", 0), ("sw", 1)):
        local, fetched = logged_runs[lang][0], folder / f"run-{lang}-id{index}"
        assert (fetched / "status").read_text() == "COMPLETE\n"
        for name in ("masks.safetensors", "summary.json"):
            assert (fetched / name).read_bytes() == (local / name).read_bytes(), name
        config = yaml.safe_load((fetched / "config.yaml").read_text())
        assert config == {**yaml.safe_load((local / "config.yaml").read_text()), "wandb": config["wandb"]}
        assert config["wandb"]["project"] == "proj" and config["wandb"]["group"] == "g"  # where the run is
    fetched_tables = json.loads((out / "tables.json").read_text())
    expected = local_tables(logged_runs, tmp_path)
    for section in ("perplexity", "iou", "layer_metrics"):
        assert fetched_tables[section] == expected[section], section
    printed = capsys.readouterr().out
    assert str(out / "report.html") in printed and "wandb sync" in printed
    assert analysis_run_info(out) == {"entity": "ent", "project": "proj", "group": "g", "job": "compare"}

    # Again: the folders are complete for the same W&B runs, nothing is downloaded twice.
    downloads = [a.downloads for run in FakeApi.runs_by_source for a in run.artifacts]
    monkeypatch.chdir(tmp_path)  # the default report folder: ./compare/sweep-sw33p
    assert main(["compare", "wandb:ent/proj/sweep=sw33p", "--download_dir", str(download), "--no_wandb"]) == 0
    assert (tmp_path / "compare" / "sweep-sw33p" / "report.html").is_file()
    assert [a.downloads for run in FakeApi.runs_by_source for a in run.artifacts] == downloads


def test_compare_a_wandb_group_rebuilds_older_runs_from_their_summary(logged_runs, tmp_path, monkeypatch):
    import wandb

    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setattr(FakeApi, "runs_by_source", fake_runs(logged_runs, with_run_files=False))
    monkeypatch.setattr(FakeApi, "calls", [])
    download, out = tmp_path / "download", tmp_path / "report"
    assert main(["compare", "wandb:ent/proj/group=g", "--download_dir", str(download), "--out", str(out)]) == 0
    assert FakeApi.calls == [("runs", "ent/proj", {"group": "g"})]
    folder = download / "ent" / "proj" / "group-g"
    for lang, index in (("en", 0), ("sw", 1)):
        local = json.loads((logged_runs[lang][0] / "summary.json").read_text())
        rebuilt = json.loads((folder / f"run-{lang}-id{index}" / "summary.json").read_text())
        assert rebuilt["rebuilt_from_wandb"] is True
        for key in ("model", "method", "pattern", "target_sparsity", "calibration_language", "nsamples", "seqlen"):
            assert rebuilt[key] == local[key], key
        assert rebuilt["sparsity"] == pytest.approx(local["sparsity"])
        for key in ("perplexity", "bits_per_byte"):  # flattened: approx compares flat mappings only
            assert flat_config(rebuilt[key]) == pytest.approx(flat_config(local[key])), key
        columns = ["layer", "module", "sparsity", "dense_zeros", "error", "rel_error", "snr_db"]
        assert [[m[c] for c in columns] for m in rebuilt["modules"]] == [
            [pytest.approx(m[c]) if isinstance(m[c], float) else m[c] for c in columns] for m in local["modules"]
        ]
        assert rebuilt["timings_s"]["prune"] == pytest.approx(local["timings_s"]["prune"])
    fetched_tables = json.loads((out / "tables.json").read_text())
    expected = local_tables(logged_runs, tmp_path)
    assert fetched_tables["iou"] == expected["iou"]
    assert flat_config(fetched_tables["perplexity"]) == pytest.approx(flat_config(expected["perplexity"]))


def test_summary_from_wandb_reads_downstream_scores():
    config = {"model": {"name": "m"}, "prune": {"pattern": "2:4"}, "data": {"calibration_language": "en+sw"}}
    values = {
        "acc/pruned/belebele_swh_Latn": 0.3,
        "exact_match/strict-match/dense/mkqa_de": 0.1,
        "prune/sparsity/q_proj": 0.5,  # a per-layer history value, not a result
        "ppl/dense/en": 12.0,
        "time/prune": 4.0,
    }
    summary = summary_from_wandb(config, values, [])
    assert summary.target_sparsity == 0.5 and summary.nsamples == 32
    assert summary.calibration_mix == {"en": 16, "sw": 16}
    assert summary.downstream == {
        "pruned": {"belebele_swh_Latn": {"acc": 0.3}},
        "dense": {"mkqa_de": {"exact_match/strict-match": 0.1}},
    }
    assert summary.perplexity == {"dense": {"en": 12.0}} and summary.timings_s == {"prune": 4.0}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("wandb:ent/proj/abc", ("ent", "proj", "abc", None)),
        ("wandb:ent/proj/sweep=abc", ("ent", "proj", "abc", None)),
        ("wandb:ent/proj/group=a/b c", ("ent", "proj", None, "a/b c")),
    ],
)
def test_wandb_source_forms(spec, expected):
    source = parse_source(spec)
    assert (source.entity, source.project, source.sweep, source.group) == expected
    assert ".." not in str(source.folder) and len(source.folder.parts) == 3


@pytest.mark.parametrize("spec", ["wandb:proj/abc", "wandb:ent//abc", "wandb:ent/proj/group=", "wandb:e/p/tag=x"])
def test_bad_wandb_source_is_a_user_error(spec):
    with pytest.raises(UserError, match="wandb:ENTITY/PROJECT/SWEEP_ID"):
        parse_source(spec)
