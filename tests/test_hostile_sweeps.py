"""Sweeps too large to list, and a --root that is a file: one line on stderr and exit 2, at once."""

import time

import pytest

from lp_prune.cli import main
from lp_prune.sweeps.count import DEFAULT_MAX_RUNS, sweep_size
from lp_prune.sweeps.expand import expand, load_sweep

HEADER = 'name: big\ncommand: ["${env}", lp-prune, run, "${args}"]\n'
GRID = HEADER + (
    "method: grid\nparameters:\n"
    f"  seed: {{values: {list(range(100))}}}\n"
    "  data.seed: {distribution: int_uniform, min: 0, max: 9999999999}\n"
    "  prune.sparsity: {values: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]}\n"
)
RANDOM = HEADER + "method: random\nparameters:\n  prune.sparsity: {distribution: uniform, min: 0.1, max: 0.9}\n"


def refusal(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    started = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("lp-prune: error:"), err
    return err


@pytest.mark.parametrize(
    ("text", "flags", "runs"),
    [(GRID, (), "10,000,000,000,000"), (RANDOM, ("--count", str(10**9)), "1,000,000,000")],
    ids=["grid-of-10^13", "random-of-10^9"],
)
def test_a_sweep_of_too_many_runs_is_refused_before_listing(text, flags, runs, tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(text)
    err = refusal(capsys, ["sweep", str(sweep), "--dry-run", "--root", str(tmp_path / "runs"), *flags])
    assert f"sweep big makes {runs} runs, more than --max_runs {DEFAULT_MAX_RUNS:,}" in err
    assert not (tmp_path / "runs").exists()


def test_max_runs_can_be_raised_and_the_count_matches_the_listing(tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        HEADER + "method: grid\nparameters:\n  seed: {distribution: int_uniform, min: 0, max: 3}\n"
        "  prune.sparsity: {distribution: q_uniform, min: 0.1, max: 0.5, q: 0.1}\n"
        "  prune.method: {value: wanda}\n"
    )
    loaded = load_sweep(sweep)
    assert sweep_size(loaded, None) == len(expand(loaded)) == 16
    root = str(tmp_path / "runs")
    assert "makes 16 runs, more than --max_runs 15" in refusal(
        capsys, ["sweep", str(sweep), "--dry-run", "--root", root, "--max_runs", "15"]
    )
    assert main(["sweep", str(sweep), "--dry-run", "--root", root, "--max_runs", "16"]) == 0


@pytest.mark.parametrize("under", [False, True], ids=["a-file", "under-a-file"])
def test_sweep_root_that_is_a_file_is_one_line(under, tmp_path, capsys):
    sweep, a_file = tmp_path / "sweep.yaml", tmp_path / "a_file"
    sweep.write_text(RANDOM)
    a_file.write_text("x")
    root = a_file / "runs" if under else a_file
    err = refusal(capsys, ["sweep", str(sweep), "--count", "2", "--root", str(root)])
    assert f"--root {root}: {a_file} is not a folder" in err
    assert a_file.read_text() == "x"
