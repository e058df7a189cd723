"""Processes that share the cache (a sweep's runs with --parallel) compute each entry once: the others
wait for the lock and read what the first one wrote."""

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from lp_prune.config import GenerationConfig, ModelConfig
from lp_prune.data import generated
from lp_prune.data.windows import TokenWindows
from lp_prune.evaluation.perplexity import cached_dense_perplexity
from lp_prune.storage.cache_lock import cache_lock, compute_once, lock_path

SLOW = 1.5  # seconds the planted computation takes: long enough for the second process to arrive meanwhile
FORK = multiprocessing.get_context("fork")  # the children inherit the planted functions


def counted(calls: Path, value: object) -> object:
    """A slow computation that leaves a line in `calls` for each time it runs."""
    with open(calls, "a") as log:
        log.write(f"{os.getpid()}\n")
    time.sleep(SLOW)
    return value


def in_two_processes(target, tmp_path: Path) -> list:
    """`target(calls, out)` in two processes started together; what each returned (JSON in `out`)."""
    calls = tmp_path / "calls"
    outs = [tmp_path / f"out{i}.json" for i in range(2)]
    processes = [FORK.Process(target=target, args=(calls, out)) for out in outs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    return [len(calls.read_text().splitlines()), *(json.loads(out.read_text()) for out in outs)]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("LP_PRUNE_CACHE", str(folder))
    return folder


def dense_perplexity_child(calls: Path, out: Path) -> None:
    windows = {"en": TokenWindows(torch.arange(12).reshape(3, 4), torch.full((3,), 9))}
    evaluate = lambda: counted(calls, {"en": {"ppl": float(os.getpid())}})  # noqa: E731 - each process its own
    results = cached_dense_perplexity(ModelConfig(name="planted-model"), windows, evaluate)
    out.write_text(json.dumps(results))


def test_the_dense_perplexity_of_two_runs_started_together_is_computed_once(cache, tmp_path):
    calls, first, second = in_two_processes(dense_perplexity_child, tmp_path)
    assert calls == 1  # the second waited for the lock and read the first one's entry
    assert first == second  # both hold the one computed value
    (entry,) = (cache / "dense_perplexity").glob("*.json")
    assert {p.name for p in entry.parent.iterdir()} <= {entry.name, entry.name + ".lock"}  # no temporary file left


def generated_child(calls: Path, out: Path) -> None:
    def planted_generation(model, tokenizer, counts, seqlen, seed, options):
        ids = torch.full((2, seqlen), os.getpid() % 1000)
        return counted(calls, (TokenWindows(ids, torch.full((2,), seqlen)), ["sw", "sw"], {"texts": []}))

    generated.generate_calibration_mix = planted_generation
    windows, languages, record = generated.cached_generate_calibration_mix(
        ModelConfig(name="planted-model"), torch.nn.Linear(1, 1), None, {"sw": 2}, 4, 0, GenerationConfig()
    )
    read = record["cache"] is not None
    out.write_text(json.dumps({"ids": windows.ids.tolist(), "languages": languages, "read": read}))


def test_generated_calibration_of_two_runs_started_together_is_generated_once(cache, tmp_path):
    calls, first, second = in_two_processes(generated_child, tmp_path)
    assert calls == 1
    assert first["ids"] == second["ids"] and first["languages"] == second["languages"] == ["sw", "sw"]
    assert sorted([first["read"], second["read"]]) == [False, True]  # one generated, the other read the cache


def test_compute_once_reads_again_under_the_lock(tmp_path):
    entry = tmp_path / "entry.json"
    reads = []

    def read():
        reads.append(1)
        if len(reads) == 2:  # another process wrote it between the first look and the lock
            entry.write_text("1")
        return json.loads(entry.read_text()) if entry.exists() else None

    assert compute_once(entry, read, lambda: pytest.fail("computed although the entry was there"), lambda _: None) == 1
    assert len(reads) == 2
    with FileLock(lock_path(entry)).acquire(timeout=0):  # released: another holder gets it at once
        pass


def test_a_cache_that_cannot_hold_a_lock_costs_the_lock_not_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with cache_lock(blocker / "entry"):  # its folder cannot be made: no lock, no error
        pass
