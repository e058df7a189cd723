"""Every row of docs/bad-inputs.md: one line on stderr, exit code 2, no traceback."""

import re
import shlex
from pathlib import Path

import pytest

from lp_prune.cli import main

DOC = Path(__file__).parents[1] / "docs" / "bad-inputs.md"
ROW = re.compile(r"^\| (\d+) \| `(.+)` \| `(.+)` \|$")
SMALL = [
    "--data.nsamples",
    "4",
    "--data.seqlen",
    "32",
    "--data.eval_windows",
    "1",
    "--data.eval_seqlen",
    "32",
    "--data.eval_languages",
    "[en]",
]


def catalogue() -> list[tuple[str, str, str]]:
    rows = [ROW.match(line) for line in DOC.read_text().splitlines()]
    return [m.groups() for m in rows if m]


def test_catalogue_has_at_least_15_rows():
    assert len(catalogue()) >= 15


@pytest.fixture(scope="module")
def complete_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("complete") / "run"
    assert (
        main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, "--eval.perplexity", "false"]) == 0
    )
    return out


@pytest.mark.parametrize(("number", "command", "message"), catalogue())
def test_bad_input(number, command, message, tiny_model_dir, complete_run, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    filled = command.format(model=tiny_model_dir, tmp=tmp_path, file=a_file, complete=complete_run)
    argv = shlex.split(filled)
    if argv[0] == "run" and "--resume" not in argv:
        defaults = ["--model.name", str(tiny_model_dir), *SMALL, "--out", str(tmp_path / "out")]
        argv = ["run", *defaults, *argv[1:]]  # the row's own flags come last and win
    capsys.readouterr()
    assert main(argv) == 2, f"row {number}: {filled}"
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("lp-prune: error:"), err
    assert message in err, f"row {number}: {err}"
