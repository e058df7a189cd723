"""`lp-prune study` end to end on a tiny model: the grid, analyze, compare, the report; and resuming."""

import json

import pytest
import yaml

from lp_prune.analysis.compare.findings import CLAIMS
from lp_prune.analysis.compare.verdicts import NO_DATA
from lp_prune.analysis.study_report import spread_text
from lp_prune.cli import main
from lp_prune.sweeps.study import compare_repeat


def study_sweep(path, model_dir, parameters):
    """A grid like sweeps/study.yaml at tiny sizes: same axes (seed, language, method), same evaluation kinds."""
    command = [
        "${env}", "lp-prune", "run", f"--model.name={model_dir}", "--data.nsamples=4", "--data.seqlen=32",
        "--data.eval_windows=1", "--data.eval_seqlen=24", "--data.eval_languages=[en, sw]",
        "--eval.tasks=proxy", "--eval.limit=2", "--wandb.mode=disabled", "${args}",
    ]  # fmt: skip
    body = {"name": "tiny-study", "method": "grid", "command": command, "parameters": parameters}
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_study_runs_the_grid_and_reports_every_claim_with_data(eval_model_dir, tmp_path, capsys):
    grid = study_sweep(
        tmp_path / "study.yaml",
        eval_model_dir,
        {
            "data.seed": {"values": [0, 1]},
            "data.calibration_language": {"values": ["en", "sw"]},
            "prune.method": {"values": ["wanda"]},
        },
    )
    root, out = tmp_path / "runs", tmp_path / "report"
    argv = ["study", "--sweeps", f"[{grid}]", "--root", str(root), "--out", str(out), "--no_wandb"]
    argv += ["--windows", "2", "--seqlen", "24", "--batch_size", "1", "--repeat", "--parallel", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[4/4]" in printed and "Study report:" in printed

    reports = ("study.md", "study.json", "report.md", "tables.json", "analysis/analysis.json", "analysis/analysis.md")
    for name in reports:
        assert (out / name).is_file(), name
    assert list(out.glob("*.png")) and list((out / "analysis").glob("*.png"))
    record = json.loads((out / "study.json").read_text())
    (setting,) = record["settings"]
    assert setting.startswith("wanda")
    assert [row["claim"] for row in record["claims"]] == [claim.id for claim in CLAIMS]
    findings = {f["claim"]: f for f in record["findings"][setting]}
    assert set(findings) == {claim.id for claim in CLAIMS}
    # C7 needs a third language (similar or outlier) beside two; Q1 two task types (the proxy is one)
    for claim, finding in findings.items():
        assert (finding["verdict"] == NO_DATA) == (claim in ("C7", "Q1")), f"{claim}: {finding['evidence']}"
        assert (
            record["claims"][[claim.id for claim in CLAIMS].index(claim)]["tool"][setting]["verdict"]
            == finding["verdict"]
        )
    # Two draws of each language: a spread per headline number, from the runs' own summaries.
    spreads = {(row["language"], row["number"]): row for row in record["draw_spreads"]}
    assert set(spreads) == {(lang, number) for lang in ("en", "sw") for number in ("perplexity", "accuracy")}
    for (lang, number), row in spreads.items():
        assert row["seeds"] == [0, 1] and len(row["values"]) == 2
        assert row["spread"] == pytest.approx(max(row["values"]) - min(row["values"]))
        run_dirs = sorted(p for p in (root / "tiny-study").iterdir() if p.is_dir() and f"-{lang}-" in p.name)
        if number == "perplexity":
            values = [json.loads((p / "summary.json").read_text())["perplexity"]["pruned"][lang] for p in run_dirs]
            assert row["values"] == values
    summaries = [json.loads(p.read_text()) for p in (root / "tiny-study").glob("*/summary.json")]
    whole = sum(v for s in summaries for k, v in s["timings_s"].items() if not k.startswith("prune_"))
    assert record["resources"]["runs_time_s"] == pytest.approx(whole, abs=0.06)  # prune's parts not twice
    assert record["resources"]["runs"] == 4 and record["resources"]["peak_rss_mb"] > 0
    assert record["provenance"]["machine"]["matmul_gflops"] > 0
    assert record["repeat"]["numbers"] > 0 and record["repeat"]["identical"], record["repeat"]
    markdown = (out / "study.md").read_text()
    assert "| C1 |" in markdown and "Repeatability" in markdown and "bit for bit" in markdown
    shown = record["figures"]
    assert any(f.startswith("analysis/") for f in shown) and any("/" not in f for f in shown)

    # The record is the next study's pilot: the grid's sizes, the phase times, C3's noise in parts.
    assert record["sizes"]["draws"] == 2 and record["sizes"]["items_per_cell"] == 2
    assert record["sizes"]["families"] == {"proxy": 2} and record["sizes"]["items_per_run"] == 2 * 2
    assert sum(record["resources"]["phase_s"].values()) == pytest.approx(record["resources"]["runs_time_s"], abs=0.5)
    c3 = findings["C3"]["details"]["cells"]
    assert all(cell["item_sd"] is not None and cell["draw_sd"] is not None for cell in c3.values())
    runs_before = sorted((root / "tiny-study").iterdir())
    assert main([*argv[:7], "--plan"]) == 0
    plan = capsys.readouterr().out
    assert f"Power plan from the pilot {out / 'study.json'}" in plan and "C3 pooled" in plan, plan
    assert "Projected time here" in plan and sorted((root / "tiny-study").iterdir()) == runs_before
    assert all((out / figure).is_file() and f"]({figure})" in markdown for figure in shown)

    # Again: nothing runs or is analysed again; the report is made anew from what is kept.
    analysis_written = (out / "analysis" / "analysis.json").stat().st_mtime_ns
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[1/" not in printed and "already covers these runs" in printed
    assert (out / "analysis" / "analysis.json").stat().st_mtime_ns == analysis_written


def test_study_stops_before_any_run_on_a_bad_sweep_file(eval_model_dir, tmp_path, capsys):
    good = study_sweep(tmp_path / "good.yaml", eval_model_dir, {"data.calibration_language": {"values": ["en"]}})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "b", "method": "grid", "parameters": {"prune.method": {"value": "nope"}}}))
    root = tmp_path / "runs"
    argv = ["study", "--sweeps", f"[{good}, {bad}]", "--root", str(root), "--out", str(tmp_path / "r"), "--no_wandb"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lp-prune: error:") and len(err.strip().splitlines()) == 1
    assert not root.exists()  # the good sweep's run did not start either


def test_a_repeat_that_differs_is_reported_with_its_differences(tmp_path):
    folders = []
    for name, ppl in (("a", 10.0), ("b", 10.5)):
        folder = tmp_path / name
        folder.mkdir()
        summary = {"perplexity": {"pruned": {"en": ppl, "sw": 20.0}}, "downstream": {"pruned": {"t": {"acc": 0.5}}}}
        (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "masks.safetensors").write_bytes(b"same")
        folders.append(folder)
    result = compare_repeat(*folders)
    assert not result["identical"] and result["masks_identical"]
    assert result["differences"] == [{"metric": "ppl/pruned/en", "first": 10.0, "repeat": 10.5}]
    assert result["numbers"] == 3


def test_bad_study_options_are_one_line_errors(capsys):
    assert main(["study", "--parallel", "0"]) == 2
    assert "--parallel must be at least 1" in capsys.readouterr().err


def test_a_spread_of_float_rounding_reads_zero():
    tiny = (0.1 + 0.2) - 0.3  # two equal means, taken over different tasks, one bit apart
    assert tiny != 0 and spread_text(tiny, 0.3) == "0"
    assert spread_text(0.0, 0.4667) == "0"
    assert spread_text(0.0167, 0.4417) == "0.0167"
    assert spread_text(1.42, 100.4) == "1.42"


def test_a_claim_beyond_the_study_is_listed_without_an_agreement():
    from lp_prune.analysis.study_report import claims_table

    findings = {"s": [{"claim": "C1", "verdict": "supported"}, {"claim": "C8", "verdict": "supported"}]}
    rows = {row["claim"]: row for row in claims_table(findings, ["s"])}
    assert rows["C1"]["tool"]["s"] == {"verdict": "supported", "agreement": "agrees"}
    assert rows["C8"]["tool"]["s"] == {"verdict": "supported", "agreement": "beyond the study"}
    assert rows["Q1"]["tool"]["s"] == {"verdict": "no data", "agreement": "open question in the study"}
