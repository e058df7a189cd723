"""W&B runs as the runs table and its panels show them, read back from the offline record: names,
groups and tags from the recipe, one comparison value per run, the verdicts table and the HTML report
of compare and analyze, and the masks artifact's absolute paths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lp_prune.cli import main
from lp_prune.config import PruneConfig, RunConfig, WandbConfig
from lp_prune.tracking.run_labels import display_name, labelled
from lp_prune.tracking.summary import RunSummary, comparison_numbers
from test_wandb_ecosystem import masks_artifact_entries, run_record
from wandb_offline import closed_log, find_offline_runs, iter_records, read_summary

SMALL = ["--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2", "--data.eval_windows", "2"]
SMALL += ["--data.eval_seqlen", "32", "--data.eval_languages", "[en, sw]", "--wandb.mode", "offline"]
VERDICT_COLUMNS = ["setting", "claim", "verdict", "evidence"]


@pytest.fixture(scope="module")
def two_runs(tiny_model_dir, tmp_path_factory):
    """Wanda calibrated on en (draw 0) and on sw (draw 3), with no W&B name, group or tags given."""
    root = tmp_path_factory.mktemp("table") / "langs"
    for lang, draw in (("en", "0"), ("sw", "3")):
        args = ["run", "--model.name", str(tiny_model_dir), "--out", str(root / lang), "--prune.method", "wanda"]
        assert main([*args, "--data.calibration_language", lang, "--data.seed", draw, *SMALL]) == 0
    return root


def media(run_folder: Path, key: str) -> dict:
    """The reference logged under `key` (a table or HTML file: _type, path, ...), one history item per field."""
    fields: dict = {}
    for record in iter_records(closed_log(run_folder)):
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                if len(item.nested_key) == 2 and item.nested_key[0] == key:
                    fields[item.nested_key[1]] = json.loads(item.value_json)
    assert fields, f"nothing logged under {key}"
    return fields


def media_file(run_folder: Path, reference: dict) -> Path:
    return run_folder / "files" / reference["path"]


# --- a pruning run: name, group, tags and the comparison values ---------------------------------------


def test_runs_are_named_grouped_and_tagged_from_their_recipe(two_runs, tiny_model_dir):
    setting = f"{tiny_model_dir.name}-wanda-0.5"
    for lang, draw in (("en", 0), ("sw", 3)):
        (run,) = find_offline_runs(two_runs / lang / "wandb")
        info = run_record(run)
        assert info.display_name == f"wanda-0.5-{lang}-d{draw}"
        assert info.run_group == setting  # the languages and draws of one setting sit together
        assert list(info.tags) == [setting, "wanda", f"cal:{lang}"]


def test_summary_holds_own_language_and_geometric_mean_perplexity(two_runs):
    for lang in ("en", "sw"):
        (run,) = find_offline_runs(two_runs / lang / "wandb")
        summary = read_summary(closed_log(run))
        pruned = {code: summary[f"ppl/pruned/{code}"] for code in ("en", "sw")}
        dense = {code: summary[f"ppl/dense/{code}"] for code in ("en", "sw")}
        assert summary["perplexity/own"] == pytest.approx(pruned[lang])
        assert summary["perplexity/own_ratio"] == pytest.approx(pruned[lang] / dense[lang])
        assert summary["perplexity/geo_mean"] == pytest.approx(math.sqrt(pruned["en"] * pruned["sw"]))
        ratio = math.sqrt(pruned["en"] * pruned["sw"]) / math.sqrt(dense["en"] * dense["sw"])
        assert summary["perplexity/geo_mean_ratio"] == pytest.approx(ratio)
        assert "accuracy/mean" not in summary  # no downstream task ran


def test_summary_holds_mean_downstream_accuracy(eval_model_dir, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--model.name", str(eval_model_dir), "--out", str(out), *SMALL, "--data.eval_languages", "[en]"]
    assert main([*args, "--eval.tasks", "[proxy]", "--eval.limit", "2"]) == 0
    downstream = json.loads((out / "summary.json").read_text())["downstream"]
    (run,) = find_offline_runs(out / "wandb")
    summary = read_summary(closed_log(run))
    for stage, key in (("pruned", "accuracy/mean"), ("dense", "accuracy/mean_dense")):
        scores = [result["acc"] for result in downstream[stage].values()]
        assert summary[key] == pytest.approx(sum(scores) / len(scores))


def summary_of(**fields):
    common = dict(model="m", method="wanda", pattern="unstructured", target_sparsity=0.5, nsamples=4, seqlen=8)
    return RunSummary(**{**common, "calibration_language": "en", "modules": [], **fields})


def test_comparison_numbers_of_mixes_divergence_and_downstream():
    mix = summary_of(
        calibration_language="en:2,sw:2",
        calibration_mix={"en": 2, "sw": 2},
        perplexity={"dense": {"en": 10.0, "sw": 40.0, "zh": 5.0}, "pruned": {"en": 20.0, "sw": 80.0, "zh": 5.0}},
        downstream={
            "pruned": {"a": {"acc": 0.5}, "b": {"acc": 0.7}, "c": {"exact_match": 0.1}},
            "dense": {"a": {"acc": 0.9}},
        },
    )
    numbers = comparison_numbers(mix)
    assert numbers["perplexity/own"] == pytest.approx(40.0)  # geometric mean over the mix's languages
    assert numbers["perplexity/own_ratio"] == pytest.approx(2.0)
    assert numbers["perplexity/geo_mean"] == pytest.approx((20.0 * 80.0 * 5.0) ** (1 / 3))
    assert numbers["perplexity/geo_mean_ratio"] == pytest.approx(4 ** (1 / 3))
    assert numbers["accuracy/mean"] == pytest.approx(0.6) and numbers["accuracy/mean_dense"] == 0.9
    diverged = comparison_numbers(summary_of(perplexity={"pruned": {"en": math.inf, "sw": 3.0}}))
    assert diverged == {"perplexity/own": math.inf, "perplexity/geo_mean": math.inf}  # the worst, not a gap
    assert comparison_numbers(summary_of(perplexity={"pruned": {"en": None, "sw": 3.0}}))["perplexity/own"] == math.inf
    uncalibrated = comparison_numbers(summary_of(method="magnitude", perplexity={"pruned": {"en": 4.0}}))
    assert set(uncalibrated) == {"perplexity/geo_mean"}  # no own language: it reads no calibration data


def test_names_of_other_recipes_and_given_names_win():
    config = RunConfig()
    config.prune = PruneConfig.of(method="sparsegpt", pattern="2:4")
    config.data.calibration_language, config.data.source, config.seed = "en:3,sw:1", "generated", 2
    assert display_name(config) == "sparsegpt-2:4-en3+sw1-generated-d0-seed2"
    config.prune = PruneConfig.of(method="gptq", pattern="unstructured", group_size=128)
    assert display_name(config).startswith("gptq-4bit-g128-en3+sw1")
    config.prune = PruneConfig.of(method="magnitude")
    assert display_name(config) == "magnitude-0.5-seed2"  # no calibration data, so no recipe or draw
    config.wandb = WandbConfig(name="mine", group="sweep-x", tags=["sweep-x", "x" * 80])
    wandb = labelled(config)
    assert (wandb.name, wandb.group) == ("mine", "sweep-x")
    assert wandb.tags[:2] == ["sweep-x", "x" * 64] and "magnitude" in wandb.tags


# --- compare and analyze: the verdicts as a table, the report as HTML ---------------------------------


def assert_verdicts_and_report(run: Path, report: Path):
    reference = media(run, "verdicts")
    assert reference["_type"] == "table-file"
    table = json.loads(media_file(run, reference).read_text())
    assert table["columns"] == VERDICT_COLUMNS and table["data"]
    from lp_prune.analysis.compare.findings import CLAIMS_BY_ID

    for setting, claim, verdict, evidence in table["data"]:
        assert setting and claim in CLAIMS_BY_ID and verdict and evidence
    html = media(run, "report")
    assert html["_type"] == "html-file"
    assert media_file(run, html).read_text() == report.read_text()  # the page itself, nothing injected
    return table["data"]


def test_compare_logs_its_verdicts_and_html_report(two_runs, tmp_path, tiny_model_dir):
    out = tmp_path / "report"
    assert main(["compare", str(two_runs), "--out", str(out)]) == 0
    (run,) = find_offline_runs(out / "wandb")
    assert run_record(run).run_group == f"{tiny_model_dir.name}-wanda-0.5"  # the runs' group
    rows = assert_verdicts_and_report(run, out / "report.html")
    claims = {claim for _, claim, _, _ in rows}
    assert {"C1", "C4"} <= claims
    for _, claim, verdict, _ in rows:  # the report says the same
        assert verdict in (out / "report.md").read_text(), claim


def test_analyze_logs_its_verdicts_and_html_report(two_runs, tmp_path):
    out = tmp_path / "analysis"
    args = ["analyze", str(two_runs), "--out", str(out), "--languages", "[en, sw]", "--windows", "1"]
    assert main([*args, "--seqlen", "16", "--batch_size", "1"]) == 0
    (run,) = find_offline_runs(out / "wandb")
    rows = assert_verdicts_and_report(run, out / "analysis.html")
    assert {claim for _, claim, _, _ in rows} >= {"C2", "C5"}


# --- the masks artifact -----------------------------------------------------------------------------


def test_masks_artifact_paths_are_absolute_for_a_relative_out(tiny_model_dir, tmp_path, monkeypatch):
    """`wandb sync` and the artifact's references read the files from wherever they run: a relative
    --out must not leave `runs/smoke-en/masks.safetensors` in the manifest. wandb's service may have
    started in another folder (an earlier run of this process): nothing may land there either."""
    started_in = Path.cwd()
    monkeypatch.chdir(tmp_path)
    out = Path("runs") / "smoke-en"
    assert main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL]) == 0
    (run,) = find_offline_runs(tmp_path / out / "wandb")
    entries = masks_artifact_entries(run)
    assert {Path(entry.path).name for entry in entries} >= {"masks.safetensors", "summary.json", "config.yaml"}
    for entry in entries:
        local = Path(entry.local_path)
        assert local.is_absolute() and local.is_file(), entry.local_path
        assert local.is_relative_to(tmp_path / out), entry.local_path
    assert not (started_in / out).exists()
