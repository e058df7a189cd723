"""`lp-prune study`: the study's grid, its analysis and its findings, made into one report folder.

Every step keeps what is already done, so the command continues where it stopped:
1. the runs of the sweep files (the runner skips COMPLETE runs and resumes interrupted ones);
2. `lp-prune analyze` of the complete runs into OUT/analysis, skipped when its analysis.json
   already covers exactly these runs with the same settings;
3. `lp-prune compare` of the runs into OUT, with that analysis (the findings C1-C8);
4. optionally a repeat of the grid's first run in its own folder, to say whether a rerun on this
   machine gives the same numbers bit for bit;
5. OUT/study.json and OUT/study.md (analysis.study_report): where and how it was made, the claims
   beside the study's, and the spread of the headline numbers over the calibration draws.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from lp_prune.analysis.options import AnalyzeOptions
from lp_prune.errors import ConfigError, UserError
from lp_prune.storage.files import read_json
from lp_prune.sweeps.expand import Sweep, expand, load_sweep
from lp_prune.sweeps.runner import PlannedRun, execute, plan, run_configs
from lp_prune.tracking import RunDirectory

DEFAULT_SWEEPS = ("sweeps/study.yaml", "sweeps/study-magnitude.yaml")
REPEAT_SUFFIX = "-repeat"  # the repeated run's folder: <root>/<sweep name>-repeat/<run name>


@dataclass
class StudyOptions:
    """Options of `lp-prune study`."""

    sweeps: list[str] = field(default_factory=lambda: list(DEFAULT_SWEEPS))
    """Grid sweep files of the study; their runs go to ROOT/<sweep name>/<run>."""
    root: str = "runs/sweeps"
    """Folder of the sweeps' run folders."""
    out: str = "runs/study"
    """Report folder: study.md, study.json, the comparison's tables and figures, analysis/."""
    parallel: int = 1
    """Runs at a time."""
    windows: int = 20
    """analyze: held-out windows per language (20 x 127 predicted tokens: the 2,500 LAPE asks for)."""
    seqlen: int = 128
    """analyze: tokens per window."""
    batch_size: int = 4
    """analyze: windows per forward pass."""
    repeat: bool = False
    """Run the grid's first run once more in ROOT/<sweep name>-repeat and report whether it is bit-identical."""
    no_wandb: bool = False
    """Do not log the analysis and comparison runs to W&B (the grid's runs log offline unless WANDB_MODE says)."""
    plan: bool = False
    """Print the power plan (what each claim's test could detect at the grid's sizes, what it needs, the
    projected time) from the pilot, and stop."""
    pilot: str | None = None
    """A previous study.json to plan from (default: OUT/study.json when it exists)."""

    def validate(self) -> None:
        if not self.sweeps:
            raise ConfigError("--sweeps needs at least one sweep file")
        if self.parallel < 1:
            raise ConfigError(f"--parallel must be at least 1, got {self.parallel}")
        self.analyze_options([]).validate()

    @property
    def lape_tokens(self) -> int:
        """Tokens per language analyze counts (each window's first token predicts nothing)."""
        return self.windows * (self.seqlen - 1)

    def analyze_options(self, folders: list[Path]) -> AnalyzeOptions:
        """`lp-prune analyze` of the runs in `folders`, into OUT/analysis."""
        return AnalyzeOptions(
            runs=[str(folder) for folder in folders],
            windows=self.windows,
            seqlen=self.seqlen,
            batch_size=self.batch_size,
            out=str(Path(self.out) / "analysis"),
            no_wandb=self.no_wandb,
        )


@dataclass
class StudyGrid:
    """The sweeps of the study, planned and checked before anything runs."""

    sweeps: list[Sweep]
    runs: list[list[PlannedRun]]  # per sweep
    configs: list[list[Any]]  # per sweep: each run's RunConfig

    @property
    def run_count(self) -> int:
        return sum(map(len, self.runs))

    @property
    def folders(self) -> list[Path]:
        """The run folders of the sweeps, each once (sweeps that share a name share a folder)."""
        return list(dict.fromkeys(run.out.parent for runs in self.runs for run in runs))


def plan_grid(options: StudyOptions) -> StudyGrid:
    sweeps, planned, configs = [], [], []
    for file in options.sweeps:
        sweep = load_sweep(file)
        if sweep.method != "grid":
            raise ConfigError(f"{file}: the study runs grid sweeps, found method '{sweep.method}'")
        runs = plan(sweep, expand(sweep), Path(options.root))
        configs.append(run_configs(runs, sweep))
        sweeps.append(sweep)
        planned.append(runs)
    return StudyGrid(sweeps, planned, configs)


def run_grid(grid: StudyGrid, parallel: int) -> list[str]:
    """Run what is not complete; the names of the runs that failed."""
    failed: list[str] = []
    for sweep, runs in zip(grid.sweeps, grid.runs, strict=True):
        left = sum(not run.complete for run in runs)
        print(f"Sweep {sweep.name} ({len(runs)} runs, {left} to run)", flush=True)
        outcomes = execute(runs, sweep, parallel)
        failed += [outcome.run.name for outcome in outcomes if not outcome.succeeded]
    return failed


def analysis_is_current(path: Path, run_paths: list[Path], options: AnalyzeOptions) -> bool:
    """analysis.json at `path` analysed exactly these runs with these windows: no need to analyse again."""
    if not path.is_file():
        return False
    record = read_json(path)
    analysed = {str(Path(run.get("path", "")).resolve()) for run in record.get("runs", [])}
    wanted = {str(p.resolve()) for p in run_paths}
    settings = (record.get("windows"), record.get("seqlen"), record.get("languages"))
    return analysed == wanted and settings == (options.windows, options.seqlen, options.languages)


def repeat_first_run(grid: StudyGrid) -> dict[str, Any]:
    """The grid's first run once more, in a folder of its own; how its numbers and masks compare."""
    sweep, first = grid.sweeps[0], grid.runs[0][0]
    again = replace(first, out=first.out.parent.with_name(first.out.parent.name + REPEAT_SUFFIX) / first.name)
    print(f"Repeat of {first.name} in {again.out}", flush=True)
    (outcome,) = execute([again], sweep) or [None]
    if again.complete:
        return compare_repeat(first.out, again.out)
    exit_code = outcome.exit_code if outcome else "none"
    raise UserError(f"the repeated run {again.out} did not complete (exit {exit_code}); rerun the study to retry")


def compare_repeat(first: Path, again: Path) -> dict[str, Any]:
    """Every perplexity and downstream number of two runs of one config, and their masks' bytes."""
    numbers = [run_numbers(read_json(RunDirectory(path).summary)) for path in (first, again)]
    differences = [
        {"metric": key, "first": value, "repeat": numbers[1].get(key)}
        for key, value in numbers[0].items()
        if numbers[1].get(key) != value
    ]
    masks = [file_digest(RunDirectory(path).masks) for path in (first, again)]
    return {
        "first": str(first),
        "repeat": str(again),
        "numbers": len(numbers[0]),
        "differences": differences,
        "masks_identical": masks[0] == masks[1],
        "identical": not differences and masks[0] == masks[1] and numbers[0].keys() == numbers[1].keys(),
    }


def run_numbers(summary: dict[str, Any]) -> dict[str, float]:
    """A run's results by name: perplexity per stage and language, downstream metrics per stage and task."""
    numbers = {
        f"ppl/{stage}/{lang}": value
        for stage, values in summary.get("perplexity", {}).items()
        for lang, value in values.items()
    }
    for stage, tasks in (summary.get("downstream") or {}).items():
        for task, metrics in tasks.items():
            numbers |= {
                f"{stage}/{task}/{name}": value for name, value in metrics.items() if isinstance(value, (int, float))
            }
    return numbers


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def measure_matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matmul rate in GFLOP/s (best of `repeats` [size x size] products), beside
    every time the report gives: times only compare across machines as shares of this rate."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def provenance(started: float, wall_s: float) -> dict[str, Any]:
    """Where and when the report was made: the checkout's commit (and whether it had local changes),
    the machine, and how long this command ran."""
    checkout = Path(__file__).resolve().parents[3]
    return {
        "commit": git_output(checkout, "rev-parse", "HEAD"),
        "dirty": bool(git_output(checkout, "status", "--porcelain", "--untracked-files=no")),
        "date": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "matmul_gflops": round(measure_matmul_rate(), 1),
        },
        "study_wall_s": round(wall_s, 1),
    }


def git_output(checkout: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def run_study(options: StudyOptions) -> int:
    """The whole study into OPTIONS.out; 1 when a run failed (the finished ones are kept), else 0."""
    from lp_prune.analysis.runs import find_runs, load_runs
    from lp_prune.analysis.study_report import report_figures, study_record, write_study_report
    from lp_prune.commands import analyze, compare
    from lp_prune.commands.compare import CompareOptions, check_outside_runs, writable_folder
    from lp_prune.sweeps.study_plan import grid_sizes, print_plan

    started, clock = time.time(), time.monotonic()
    options.validate()
    out = writable_folder(check_outside_runs(Path(options.out), "--out"))
    grid = plan_grid(options)  # every sweep file and run config checked before the first run starts
    pilot = Path(options.pilot) if options.pilot else out / "study.json"
    sizes = grid_sizes(grid.configs[0], options.lape_tokens)
    if options.plan or pilot.is_file():
        status = print_plan(pilot, sizes, grid.run_count, measure_matmul_rate())
        if options.plan:
            return status
    failed = run_grid(grid, options.parallel)
    if failed:
        print(f"Failed: {', '.join(failed)}; the finished runs are kept: rerun the same command to retry")
        return 1
    folders = grid.folders
    analyze_options = options.analyze_options(folders)
    analysis_path = Path(analyze_options.out) / "analysis.json"
    if analysis_is_current(analysis_path, find_runs(folders), analyze_options):
        print(f"Analysis: {analysis_path} already covers these runs")
    else:
        analyze.execute(analyze_options)
    compare.execute(
        CompareOptions(
            runs=[str(f) for f in folders], out=str(out), analysis=str(analysis_path), no_wandb=options.no_wandb
        )
    )
    repeat = repeat_first_run(grid) if options.repeat else None
    made = provenance(started, time.monotonic() - clock)
    tables, analysis = read_json(out / "tables.json"), read_json(analysis_path)
    record = study_record(load_runs(folders), tables, analysis, made, repeat, report_figures(out), sizes.to_dict())
    paths = write_study_report(out, record)
    print(f"Study report: {paths['study']} ({paths['record']})")
    return 0
