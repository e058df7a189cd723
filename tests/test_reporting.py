"""What the commands print at the end: the results table of a run, sweep progress lines, report paths,
and where the W&B run is (its URL, or the exact `wandb sync` command)."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

from lp_prune.reporting import (
    find_offline_run,
    format_duration,
    format_report_paths,
    format_run_results,
    format_sweep_line,
    sweep_eta,
    wandb_line,
)

SUMMARY = {
    "model": "gemma3-270m",
    "method": "sparsegpt",
    "pattern": "unstructured",
    "target_sparsity": 0.5,
    "calibration_language": "sw",
    "nsamples": 32,
    "seqlen": 256,
    "sparsity": 0.50012,
    "dense_zeros": 0.0451,
    "perplexity": {"dense": {"sw": 40.0, "en": 10.0, "zh": 25.0}, "pruned": {"en": 12.5, "sw": 44.0, "zh": None}},
    "downstream": {
        "dense": {"lp_prune_proxy_sw": {"acc": 0.5, "acc_stderr": 0.1, "language": "sw", "n": 50}},
        "pruned": {
            "lp_prune_proxy_sw": {"acc": 0.42, "acc_norm": 0.4, "language": "sw", "n": 50},
            "mkqa_en": {"exact_match": 0.125, "f1": 0.2, "language": "en", "n": 8},
        },
    },
    "timings_s": {"prune": 83.4, "eval_dense": 10.0},
}


def test_run_results_table():
    text = format_run_results(SUMMARY, "runs/x", "W&B: https://wandb.example.org/e/p/runs/abc")
    lines = text.splitlines()
    assert lines[0] == "Results: gemma3-270m, sparsegpt 50%, calibrated on sw (32 x 256 tokens)"
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    # Languages in the project's order (en before sw before zh), ratio = pruned / dense by hand.
    assert [line.split()[0] for line in lines[1:5]] == ["language", "en", "sw", "zh"]
    assert rows["en"][1:] == ["10.00", "12.50", "1.250x"]
    assert rows["sw"][1:] == ["40.00", "44.00", "1.100x"]
    assert rows["zh"][1:] == ["25.00", "-", "-"]  # no pruned value: no ratio, nothing invented
    # Downstream: a row per task, in language order, the task's main score for both stages.
    assert rows["mkqa_en"][1:] == ["en", "exact_match", "-", "0.125"]
    assert rows["lp_prune_proxy_sw"][1:] == ["sw", "acc", "0.500", "0.420"]
    assert lines.index(next(line for line in lines if "mkqa_en" in line)) < lines.index(
        next(line for line in lines if "lp_prune_proxy_sw" in line)
    )
    assert "Sparsity 50.01% of the prunable weights (4.51% zero before pruning)" in lines
    assert "Pruning took 1m23s" in lines
    assert lines[-2:] == ["Run directory: runs/x", "W&B: https://wandb.example.org/e/p/runs/abc"]


def test_run_results_without_downstream_or_wandb():
    summary = {key: value for key, value in SUMMARY.items() if key != "downstream"}
    text = format_run_results({**summary, "pattern": "2:4"}, Path("r"), None)
    assert "calibrated on sw" in text.splitlines()[0] and "sparsegpt 2:4" in text.splitlines()[0]
    assert "task" not in text and "W&B" not in text
    assert text.splitlines()[-1] == "Run directory: r"


def test_a_method_without_calibration_data_is_not_said_to_be_calibrated():
    for method in ("rtn", "magnitude"):
        headline = format_run_results({**SUMMARY, "method": method}, Path("r"), None).splitlines()[0]
        assert "calibrated on" not in headline and "no calibration data" in headline, headline


def make_offline_run(wandb_dir: Path, stamp: str, run_id: str, mtime: float) -> Path:
    folder = wandb_dir / f"offline-run-{stamp}-{run_id}"
    folder.mkdir(parents=True)
    os.utime(folder, (mtime, mtime))
    return folder


def test_wandb_line_finds_the_newest_offline_run(tmp_path):
    run_dir = tmp_path / "my run"
    assert find_offline_run(run_dir) is None and wandb_line(run_dir) is None  # W&B disabled
    now = time.time()
    make_offline_run(run_dir / "wandb", "20250101_120000", "aaa", now)
    newest = make_offline_run(run_dir / "wandb", "20250102_080000", "bbb", now - 100)  # resumed later
    (run_dir / "wandb" / "latest-run").symlink_to(newest)
    (run_dir / "wandb" / "debug.log").write_text("")
    assert find_offline_run(run_dir) == newest
    line = wandb_line(run_dir)
    assert line == f"W&B (offline): wandb sync {shlex.quote(str(newest))}"
    assert shlex.split(line.split(": ", 1)[1]) == ["wandb", "sync", str(newest)]  # runs as printed
    assert wandb_line(run_dir, url="https://wandb.ai/e/p/runs/bbb") == "W&B: https://wandb.ai/e/p/runs/bbb"


def test_durations_and_sweep_lines():
    assert [format_duration(s) for s in (0, 42.4, 59.6, 185, 3725)] == ["0s", "42s", "1m00s", "3m05s", "1h02m"]
    assert sweep_eta([], remaining=3) is None
    assert sweep_eta([60, 120], remaining=4) == 360  # mean 90 s x 4 runs
    assert sweep_eta([60, 120], remaining=4, parallel=2) == 180
    assert format_sweep_line(2, 5, "en-1a2b", "COMPLETE", 65, 200) == "[2/5] en-1a2b  COMPLETE  1m05s  ETA 3m20s"
    assert format_sweep_line(5, 5, "sw-3c4d", "COMPLETE", 61, 0) == "[5/5] sw-3c4d  COMPLETE  1m01s"


def test_report_paths():
    text = format_report_paths("Comparison of 3 runs", {"html": Path("a/report.html"), "markdown": Path("a/r.md")})
    assert text.splitlines() == ["Comparison of 3 runs:", "  html      a/report.html", "  markdown  a/r.md"]
    assert format_report_paths("X", {}, "W&B: u").splitlines() == ["X:", "W&B: u"]


def test_report_html_is_the_markdown_converted_with_its_figures_embedded(tmp_path):
    import base64

    from lp_prune.analysis.render import html_document

    png = b"\x89PNG\r\n\x1a\nfake"
    (tmp_path / "plot_a.png").write_bytes(png)
    text = "# Title\n\nSee `--out` and **this** (default <first>/analysis), p < 0.05.\n\n"
    text += "| a | b |\n|---|---|\n| 1 | **2** |\n\n![plot a](plot_a.png)\n\n![gone](missing.png)\n"
    page = html_document(text, tmp_path)
    assert "<h1>Title</h1>" in page and "<code>--out</code>" in page and "<strong>this</strong>" in page
    assert "&lt;first&gt;/analysis" in page and "p &lt; 0.05" in page  # text, not a tag
    assert "<td><strong>2</strong></td>" in page and "<th>a</th>" in page
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert 'src="missing.png"' in page  # a figure that is not there stays a link
