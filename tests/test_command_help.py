"""Every subcommand's options are one dataclass: `--help` shows each field with its docstring, and a
command line parses into that dataclass."""

import ast
import dataclasses
import importlib
import inspect
import itertools
import re
import subprocess
import sys
import textwrap
import typing

import pytest
import yaml

from lp_prune.analysis.options import AnalyzeOptions
from lp_prune.cli import main
from lp_prune.commands.compare import CompareOptions
from lp_prune.commands.eval import EvalOptions
from lp_prune.commands.sweep import SweepOptions
from lp_prune.config import LANGUAGES, RunConfig
from lp_prune.pruning import PruningMethod

OPTIONS = {
    "compare": CompareOptions,
    "analyze": AnalyzeOptions,
    "eval": EvalOptions,
    "sweep": SweepOptions,
    "run": RunConfig,
    "estimate": RunConfig,
}


def docstrings(cls: type) -> dict[str, str]:
    """The string literal right under each annotated field in the class source (and its bases')."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        for item, after in itertools.pairwise(body):
            if (
                isinstance(item, ast.AnnAssign)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[item.target.id] = inspect.cleandoc(after.value.value)
    return docs


def help_text(capsys, monkeypatch, command: str) -> str:
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option where it fits
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def help_entries(text: str) -> dict[str, str]:
    """First word of each option or positional entry (`--out`, `runs`) -> the whole entry."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"^  \S", line):
            current = line.split()[0].rstrip(",")
            entries[current] = line
        elif current and line.startswith("   "):
            entries[current] += " " + line
        else:
            current = None
    return entries


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def expected_fields(cls: type, prefix: str = "") -> list[tuple[str, str, type | None]]:
    """(dotted name, docstring, nested dataclass or None) for every field, nested ones included."""
    docs, hints = docstrings(cls), typing.get_type_hints(cls)
    found = []
    for item in dataclasses.fields(cls):
        assert item.name in docs, f"{cls.__name__}.{item.name} has no docstring (its --help line)"
        kind = hints[item.name]
        nested = kind if dataclasses.is_dataclass(kind) and not issubclass(kind, PruningMethod) else None
        found.append((prefix + item.name, docs[item.name], nested))
        if nested is not None:
            found += expected_fields(nested, f"{prefix}{item.name}.")
    return found


@pytest.mark.parametrize("command", list(OPTIONS))
def test_help_names_every_field_with_its_docstring(command, capsys, monkeypatch):
    text = help_text(capsys, monkeypatch, command)
    entries = help_entries(text)
    headings = {squeezed(line) for line in text.splitlines() if line.endswith(":")}
    for name, doc, nested in expected_fields(OPTIONS[command]):
        if nested is not None:  # a section of options: its docstring is the heading (no final period)
            assert squeezed(doc.rstrip(".") + ":") in headings, f"{command}: no section '{doc}' for {name}"
            continue
        spellings = (f"--{name}", name, f"--{name.replace('_', '-')}")
        entry = next((entries[s] for s in spellings if s in entries), None)
        assert entry is not None, f"{command} --help does not name {name}"
        assert squeezed(doc) in squeezed(entry), f"{command} --help: {name} lacks its docstring {doc!r}"


def captured_options(monkeypatch, argv: list[str]):
    module = importlib.import_module(f"lp_prune.commands.{argv[0]}")
    seen = []
    monkeypatch.setattr(module, "execute", lambda options: seen.append(options) or 0)
    assert main(argv) == 0
    (options,) = seen
    return options


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["compare", "runs/a", "runs/b", "--out", "report", "--no_wandb"],
            CompareOptions(runs=["runs/a", "runs/b"], out="report", no_wandb=True),
        ),
        (
            ["compare", "wandb:e/p/s1", "--download_dir", "dl", "--wandb_group", "g", "--analysis", "a.json"],
            CompareOptions(runs=["wandb:e/p/s1"], download_dir="dl", wandb_group="g", analysis="a.json"),
        ),
        (
            ["analyze", "runs/s", "--languages", "[en, sw]", "--windows", "2", "--lsar_rank", "1", "--include_bos"],
            AnalyzeOptions(runs=["runs/s"], languages=["en", "sw"], windows=2, lsar_rank=1, include_bos=True),
        ),
        (
            ["analyze", "runs/s", "--no_wandb"],
            AnalyzeOptions(runs=["runs/s"], languages=list(LANGUAGES), no_wandb=True),
        ),
        (
            ["eval", "runs/r", "--tasks", "belebele,arc", "--limit", "5", "--dense", "true", "--languages", "[sw]"],
            EvalOptions(target="runs/r", tasks="belebele,arc", limit=5, dense=True, languages=["sw"]),
        ),
        (["eval", "gemma3-270m"], EvalOptions(target="gemma3-270m", tasks=["proxy"])),
        (
            ["sweep", "s.yaml", "--root", "r", "--count", "3", "--seed", "7", "--parallel", "2", "--dry-run"],
            SweepOptions(file="s.yaml", root="r", count=3, seed=7, parallel=2, dry_run=True),
        ),
        (["sweep", "s.yaml", "--dry_run"], SweepOptions(file="s.yaml", dry_run=True)),
        (["sweep", "s.yaml"], SweepOptions(file="s.yaml")),
    ],
)
def test_a_command_line_parses_into_its_dataclass(monkeypatch, argv, expected):
    options = captured_options(monkeypatch, argv)
    assert type(options) is type(expected)
    assert options == expected


def test_eval_options_make_the_eval_config():
    config = EvalOptions(target="t", tasks="belebele,arc", limit=3, num_fewshot=1, batch_size=2).eval_config()
    assert (config.tasks, config.limit, config.num_fewshot, config.batch_size) == (["belebele", "arc"], 3, 1, 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare"], "the following arguments are required: compare.runs"),
        (["compare", "a", "--no_wandb", "true"], "unrecognized arguments: true"),
        (["analyze", "a", "--windows", "abc"], "Parser key \"windows\": Expected a <class 'int'>. Got value: abc"),
        (["eval", "t", "--dense", "maybe"], "Parser key \"dense\": Expected a <class 'bool'>. Got value: maybe"),
        (["sweep"], "the following arguments are required: sweep.file"),
    ],
)
def test_bad_values_keep_their_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lp-prune: error: {message}"


def test_the_sweep_runner_checks_runs_without_the_cli(tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "method": "grid",
                "command": ["lp-prune", "run", "${args}"],
                "parameters": {"seed": {"values": [1, 2]}},
            }
        )
    )
    code = f"""
import sys
from pathlib import Path
from lp_prune.sweeps.expand import expand, load_sweep
from lp_prune.sweeps.runner import plan, validate_runs

sweep = load_sweep({str(sweep)!r})
validate_runs(plan(sweep, expand(sweep), Path({str(tmp_path)!r})), sweep)
loaded = sorted(name for name in sys.modules if name.startswith("lp_prune.c"))
print(" ".join(loaded))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "lp_prune.cli" not in out and "lp_prune.commands.compare" not in out, out
