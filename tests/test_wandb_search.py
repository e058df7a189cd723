"""The local runner picks runs with W&B's own search library (PyPI `sweeps`): the same grid in the same
order as the W&B server, the same random draws for a seed, bayes from the finished runs' metrics."""

import json
import random
from pathlib import Path

import pytest
import yaml

from lp_prune.cli import main
from lp_prune.config.hub import HUB
from lp_prune.errors import ConfigError
from lp_prune.sweeps import expand as expand_module
from lp_prune.sweeps import runner, wandb_search
from lp_prune.sweeps.expand import expand, grid_axes, load_sweep
from lp_prune.sweeps.parameters import DISTRIBUTIONS

library = wandb_search.load()
needs_sweeps = pytest.mark.skipif(
    library is None, reason=f"W&B's `sweeps` library is not installed ({wandb_search.INSTALL}; CI installs it)"
)
SHIPPED = sorted((HUB / "sweeps").glob("*.yaml"))
SHIPPED_GRIDS = [path for path in SHIPPED if yaml.safe_load(path.read_text()).get("method", "grid") == "grid"]
RANDOM_BODY = {
    "name": "r",
    "method": "random",
    "parameters": {
        "prune.sparsity": {"distribution": "uniform", "min": 0.2, "max": 0.6},
        "data": {
            "parameters": {
                "nsamples": {"distribution": "int_uniform", "min": 4, "max": 9},
                "seqlen": {"distribution": "q_uniform", "min": 64, "max": 512, "q": 64},
                "calibration_language": {"values": ["en", "sw", "zh"], "probabilities": [0.5, 0.25, 0.25]},
            }
        },
        "prune.percdamp": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "prune.blocksize": {"distribution": "q_log_uniform_values", "min": 16, "max": 256, "q": 16},
        "seed": {"distribution": "q_normal", "mu": 10, "sigma": 3, "q": 1},
        "prune.method": {"value": "wanda"},
    },
}
GRID_BODY = {  # nested and dotted keys, ranges: the server's order is by name, not by the file's order
    "name": "g",
    "method": "grid",
    "parameters": {
        "prune.method": {"values": ["sparsegpt", "wanda"]},
        "data": {"parameters": {"nsamples": {"distribution": "int_uniform", "min": 2, "max": 4}}},
        "data.calibration_language": {"values": ["sw", "en"]},
        "prune.sparsity": {"distribution": "q_uniform", "min": 0.3, "max": 0.6, "q": 0.1},
        "seed": {"value": 3},
    },
}


def write(tmp_path, body, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def agent_grid(sweep):
    """The grid as a W&B agent receives it: one next_run at a time, the finished runs passed back."""
    finished = []
    while (suggestion := library.next_run(wandb_search.search_config(sweep), finished)) is not None:
        suggestion.state = library.RunState.finished
        finished.append(suggestion)
    return [wandb_search.values(sweep, run.config) for run in finished]


def as_items(combinations):
    return [list(combination.items()) for combination in combinations]


@pytest.fixture
def without_library(monkeypatch):
    monkeypatch.setattr(wandb_search, "load", lambda: None)


@needs_sweeps
@pytest.mark.parametrize("path", [*SHIPPED_GRIDS, "GRID_BODY"], ids=lambda p: getattr(p, "name", p))
def test_the_grid_is_the_w_and_b_servers_in_its_order(path, tmp_path, monkeypatch):
    sweep = load_sweep(write(tmp_path, GRID_BODY) if path == "GRID_BODY" else path)
    served = agent_grid(sweep)
    assert len(served) == len({json.dumps(c, sort_keys=True) for c in served}) > 0
    assert as_items(expand(sweep)) == as_items(served)  # same combinations, same order, keys in file order
    monkeypatch.setattr(wandb_search, "load", lambda: None)
    assert as_items(expand(sweep)) == as_items(served)  # and the same without the library


@needs_sweeps
def test_the_grid_of_ranges_and_nested_keys(tmp_path):
    combos = expand(load_sweep(write(tmp_path, GRID_BODY)))
    assert len(combos) == 2 * 3 * 2 * 3  # q_uniform 0.3..0.6 by 0.1 leaves out 0.6, as numpy.arange does
    assert list(combos[0]) == ["prune.method", "data.nsamples", "data.calibration_language", "prune.sparsity", "seed"]
    assert [c["data.calibration_language"] for c in combos[:2]] == ["sw", "sw"]  # sorted keys: data.* vary slowest


@needs_sweeps
@pytest.mark.parametrize("source", ["random-sparsity.yaml", "RANDOM_BODY"])
def test_random_draws_are_the_librarys_for_the_seed(source, tmp_path):
    path = write(tmp_path, RANDOM_BODY) if source == "RANDOM_BODY" else HUB / "sweeps" / source
    sweep = load_sweep(path)
    random.seed(11)
    config = wandb_search.search_config(sweep)
    served = [wandb_search.values(sweep, library.next_run(config, []).config) for _ in range(25)]
    state = random.getstate()
    assert expand(sweep, count=25, seed=11) == served
    assert random.getstate() == state  # the global state is put back
    draws = expand(sweep, count=25, seed=11)
    assert all(type(v) in (int, float, str) for d in draws for v in d.values())  # no numpy scalars reach argv
    assert expand(sweep, count=25, seed=12) != draws


@needs_sweeps
def test_the_runner_takes_the_librarys_suggestions(tmp_path, monkeypatch):
    calls = []
    real = library.next_runs

    def counted(*args, **kwargs):
        answer = real(*args, **kwargs)
        calls.append([run.config for run in answer if run is not None])
        return answer

    monkeypatch.setattr(library, "next_runs", counted)
    sweep = load_sweep(write(tmp_path, RANDOM_BODY))
    draws = expand(sweep, count=6, seed=0)
    assert len(calls) == 1 and [wandb_search.values(sweep, config) for config in calls[0]] == draws
    grid = expand(load_sweep(HUB / "sweeps" / "languages-default.yaml"))
    assert len(calls) == 2 and len(calls[1]) == len(grid) == 14


@needs_sweeps
@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_every_distribution_the_runner_takes_is_one_the_library_takes(distribution, tmp_path):
    spec = {"distribution": distribution}
    if distribution in ("constant", "categorical"):
        spec |= {"value": 0.5} if distribution == "constant" else {"values": [0.3, 0.5]}
    elif distribution == "int_uniform":
        spec |= {"min": 1, "max": 3}
    elif distribution.endswith("uniform") or distribution.endswith("uniform_values"):
        spec |= {"min": 0.1, "max": 0.9}
    else:
        spec |= {"mu": 0.0, "sigma": 1.0}
    if distribution.startswith("q_"):
        spec["q"] = 0.1
    body = {"name": "d", "method": "random", "parameters": {"prune.sparsity": spec}}
    sweep = load_sweep(write(tmp_path, body))  # passes lp_prune's checks and W&B's schema
    assert wandb_search.schema_problems(body) == []
    assert len(expand(sweep, count=3)) == 3


@needs_sweeps
def test_what_only_the_w_and_b_schema_refuses_is_one_line(tmp_path, capsys):
    body = {"name": "t", "method": "grid", "parameters": {"seed": {"values": [1, 2], "colour": "red"}}}
    assert main(["sweep", str(write(tmp_path, body)), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not follow W&B's sweep schema" in err, err


def test_a_grid_refuses_probabilities_as_w_and_b_does(tmp_path):
    body = {"name": "t", "method": "grid", "parameters": {"seed": {"values": [1, 2], "probabilities": [0.5, 0.5]}}}
    with pytest.raises(ConfigError, match="a grid takes no 'probabilities'"):
        load_sweep(write(tmp_path, body))


def test_without_the_library_grid_and_random_still_expand_and_bayes_says_what_to_install(
    tmp_path, capsys, without_library
):
    sweep = load_sweep(write(tmp_path, GRID_BODY))
    axes = grid_axes(sweep)
    assert len(expand(sweep)) == len(expand_module._grid(sweep, axes)) == 36
    draws = expand(load_sweep(write(tmp_path, RANDOM_BODY, "r.yaml")), count=50, seed=1)
    assert len(draws) == 50 and all(0.2 <= d["prune.sparsity"] <= 0.6 for d in draws)
    assert main(["sweep", str(write(tmp_path, bayes_body(), "b.yaml")), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lp-prune: error: a bayes sweep needs W&B's search library here: {wandb_search.INSTALL}"


# --- bayes -----------------------------------------------------------------------------------------


def bayes_body(run_cap=6):
    return {
        "name": "b",
        "method": "bayes",
        "metric": {"name": "ppl/pruned/en", "goal": "minimize"},
        "run_cap": run_cap,
        "command": ["lp-prune", "run", "${args}"],
        "parameters": {"prune.sparsity": {"distribution": "uniform", "min": 0.1, "max": 0.9}},
    }


def perplexity_of(sparsity: float) -> float:
    return 10 + 100 * (sparsity - 0.3) ** 2  # best at 30%


class FinishedRunPopen:
    """Stands in for a run: writes the COMPLETE folder and summary.json of its --prune.sparsity."""

    calls: list = []  # noqa: RUF012 - reset by the fixture
    metric = "ppl/pruned/en"

    def __init__(self, argv, **_kwargs):
        self.calls.append(list(argv))
        out = next(a.split("=", 1)[1] for a in argv if a.startswith("--out="))
        sparsity = float(next(a.split("=", 1)[1] for a in argv if a.startswith("--prune.sparsity=")))
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        perplexity = {"pruned": {"en": perplexity_of(sparsity)}} if self.metric == "ppl/pruned/en" else {}
        summary = {"model": "m", "method": "wanda", "pattern": "unstructured", "target_sparsity": sparsity}
        summary |= {"calibration_language": "en", "nsamples": 2, "seqlen": 8, "modules": [], "perplexity": perplexity}
        (folder / "summary.json").write_text(json.dumps(summary))
        (folder / "status").write_text("COMPLETE\n")
        self.returncode = 0

    def poll(self):
        return self.returncode

    def wait(self):
        return self.returncode


@pytest.fixture
def fake_runs(monkeypatch):
    FinishedRunPopen.calls = []
    FinishedRunPopen.metric = "ppl/pruned/en"
    monkeypatch.setattr(runner.subprocess, "Popen", FinishedRunPopen)
    return FinishedRunPopen


@needs_sweeps
def test_a_bayes_sweep_chooses_each_run_from_the_finished_runs_metrics(tmp_path, capsys, fake_runs, monkeypatch):
    seen = []
    real = wandb_search.bayes_next

    def spied(sweep, history, seed):
        seen.append([(item.state, item.params["prune.sparsity"], item.metric) for item in history])
        return real(sweep, history, seed)

    monkeypatch.setattr(wandb_search, "bayes_next", spied)
    path, root = write(tmp_path, bayes_body(run_cap=5)), tmp_path / "runs"
    assert main(["sweep", str(path), "--root", str(root)]) == 0, capsys.readouterr().err
    assert "Sweep b: 5/5 complete" in capsys.readouterr().out
    assert [len(history) for history in seen] == [0, 1, 2, 3, 4]
    for history in seen:  # every earlier run reached the search finished, with its own metric
        assert all(state == "finished" and metric == pytest.approx(perplexity_of(s)) for state, s, metric in history)
    ledger = json.loads((root / "b" / "bayes.json").read_text())
    assert len(ledger["runs"]) == 5 and [run["params"]["prune.sparsity"] for run in ledger["runs"][:4]] == [
        s for _, s, _ in seen[-1]
    ]
    assert all(0.1 <= run["params"]["prune.sparsity"] <= 0.9 for run in ledger["runs"])
    # started again with a higher count: the five are kept, two more are chosen knowing all five
    seen.clear()
    assert main(["sweep", str(path), "--root", str(root), "--count", "7"]) == 0
    assert [len(history) for history in seen] == [5, 6] and len(fake_runs.calls) == 7
    assert main(["sweep", str(path), "--root", str(root), "--count", "7", "--dry-run"]) == 0
    assert "0 more are chosen" in capsys.readouterr().out


@needs_sweeps
def test_the_same_seed_gives_the_same_bayes_sweep(tmp_path, fake_runs):
    chosen = []
    for name in ("one", "two"):
        assert main(["sweep", str(write(tmp_path, bayes_body(run_cap=4))), "--root", str(tmp_path / name)]) == 0
        chosen.append(json.loads((tmp_path / name / "b" / "bayes.json").read_text())["runs"])
    assert chosen[0] == chosen[1]


@needs_sweeps
def test_a_metric_the_runs_do_not_report_is_one_line(tmp_path, capsys, fake_runs):
    fake_runs.metric = "none"
    assert main(["sweep", str(write(tmp_path, bayes_body(run_cap=3))), "--root", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sweep metric 'ppl/pruned/en' is not a number run" in err[0], err


def test_a_bayes_sweep_needs_a_metric(tmp_path):
    body = bayes_body()
    del body["metric"]
    with pytest.raises(ConfigError, match="a bayes sweep needs 'metric' with a name"):
        load_sweep(write(tmp_path, body))


def test_ci_installs_the_library_without_its_numpy_pin():
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "python -m pip install -q --no-deps sweeps==0.3.0 jsonref" in ci
