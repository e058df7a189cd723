"""A bayes sweep run here: each next run chosen by W&B's Bayesian search from the runs finished so far.

The search (lp_prune.sweeps.wandb_search, the `sweeps` library of the W&B server) reads each
finished run's metric, the file's `metric: {name, goal}`, from the run's summary.json under its
W&B summary name (`ppl/pruned/sw`, `sparsity`, `acc/pruned/<task>`, ...). A failed run counts as
the worst result, as on the server; runs still going are known to the search as running.

The runs chosen so far, in order, are kept in `<root>/<sweep name>/bayes.json`, so a sweep started
again first finishes (or resumes) those and then continues the search where it stopped, until
--count (or the file's run_cap) runs are made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lp_prune.errors import ConfigError
from lp_prune.storage.files import read_json, write_json
from lp_prune.sweeps import wandb_search
from lp_prune.sweeps.expand import Sweep, number_of_runs
from lp_prune.sweeps.runner import PlannedRun, RunOutcome, execute_stream, plan, validate_runs
from lp_prune.tracking import RunDirectory

LEDGER_FILE = "bayes.json"
LEDGER_FORMAT = "lp_prune-bayes-sweep/1"


def run_metrics(run_dir: Path) -> dict[str, Any]:
    """A complete run's numbers by their W&B summary names (tracking.summary.headline_numbers and
    the downstream metrics, `<metric>/<stage>/<task>`)."""
    from lp_prune.evaluation.downstream_step import summary_values
    from lp_prune.tracking.summary import RunSummary, headline_numbers

    path = RunDirectory(run_dir).summary
    summary = RunSummary.from_json(read_json(path), path)
    return {**headline_numbers(summary), **summary_values(summary.downstream or {})}


class BayesSweep:
    """The runs of one bayes sweep in ROOT/<sweep name>: those chosen so far and the next ones."""

    def __init__(self, sweep: Sweep, root: Path, count: int | None = None, seed: int = 0) -> None:
        wandb_search.require("bayes")
        self.sweep = sweep
        self.root = root
        self.folder = root / sweep.name
        self.total = number_of_runs(sweep, count)
        self.seed = seed
        self.ledger = self.folder / LEDGER_FILE
        self.chosen: list[PlannedRun] = self._read_ledger()

    def _read_ledger(self) -> list[PlannedRun]:
        if not self.ledger.is_file():
            return []
        record = read_json(self.ledger)
        if not isinstance(record, dict) or record.get("format") != LEDGER_FORMAT:
            raise ConfigError(f"{self.ledger} is not lp_prune's record of a bayes sweep; choose another --root")
        if record.get("seed") != self.seed:
            raise ConfigError(f"{self.ledger}: this sweep was started with --seed {record.get('seed')}; give it again")
        return plan(self.sweep, [item["params"] for item in record["runs"]], self.root)

    def _write_ledger(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        runs = [{"name": run.name, "params": run.params} for run in self.chosen]
        write_json(self.ledger, {"format": LEDGER_FORMAT, "sweep": self.sweep.name, "seed": self.seed, "runs": runs})

    def history(self, live: set[str]) -> list[wandb_search.Observed]:
        """What the search knows of the runs chosen so far: finished with its metric, running, or failed."""
        observed = []
        for run in self.chosen:
            if run.complete:
                observed.append(wandb_search.Observed(run.params, "finished", self.metric_of(run)))
            elif run.name in live:
                observed.append(wandb_search.Observed(run.params, "running"))
            else:
                observed.append(wandb_search.Observed(run.params, "failed"))
        return observed

    def metric_of(self, run: PlannedRun) -> float | None:
        numbers = run_metrics(run.out)
        name = self.sweep.metric
        if name not in numbers:
            known = ", ".join(sorted(key for key, value in numbers.items() if isinstance(value, int | float))[:8])
            raise ConfigError(f"sweep metric '{name}' is not a number run {run.name} reports (it has: {known}, ...)")
        value = numbers[name]
        return float(value) if isinstance(value, int | float) else None  # None (NaN in the run): imputed as worst

    def next_run(self, live: set[str]) -> PlannedRun:
        """The search's next run, checked like every sweep run and recorded before it starts."""
        params = wandb_search.bayes_next(self.sweep, self.history(live), self.seed)
        (run,) = plan(self.sweep, [params], self.root)
        validate_runs([run], self.sweep)
        self.chosen.append(run)
        self._write_ledger()
        return run

    def todo(self, live: set[str]) -> Iterator[PlannedRun]:
        """The chosen runs not complete yet (resumed where interrupted), then new ones up to the total."""
        yield from [run for run in self.chosen if not run.complete]
        while len(self.chosen) < self.total:
            yield self.next_run(live)

    def left(self) -> int:
        return sum(not run.complete for run in self.chosen) + max(0, self.total - len(self.chosen))

    def execute(self, parallel: int = 1) -> list[RunOutcome]:
        live: set[str] = set()
        return execute_stream(self.todo(live), self.left(), self.sweep, parallel, live)
