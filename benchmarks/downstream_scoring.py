"""Downstream multiple-choice scoring on the packaged Gemma-3-270M: lp_prune's scorer against lm-eval's HFLM.

Both score the same lm-eval tasks (default: the offline proxy tasks of all seven languages, the
first --limit items of each) in one process, alternating, after one untimed warm-up of each. For
every version: seconds, items per second, accuracy per task (must agree), and the share of the
FLOP limit: `flops.scoring_flops` over the requests lm-eval made (each context once, the LM head
at the predicted tokens only) divided by the matmul rate measured in the same run (before and
after; the mean is used).

    python benchmarks/downstream_scoring.py --limit 8 [--tasks proxy] [--baseline-focused FILE]

--baseline-focused: another version's `focused_lm.py` (e.g. from a checkout of an older commit),
timed as a third scorer.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import flops
import matmul_rate
from _common import fmt, import_lp_prune, machine_info, progress, results_dir, write_report


def _load_class(path: Path) -> type:
    spec = importlib.util.spec_from_file_location("baseline_focused_lm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FocusedHFLM


def _recording(cls: type, sink: list, clock: list) -> type:
    """`cls` with every log-likelihood request kept in `sink` (to count the work) and the seconds
    spent scoring them in `clock` (lm-eval's own work around it excluded)."""

    class Recorded(cls):
        def _loglikelihood_tokens(self, requests, *args, **kwargs):
            sink.extend(requests)
            start = time.perf_counter()
            try:
                return super()._loglikelihood_tokens(requests, *args, **kwargs)
            finally:
                clock.append(time.perf_counter() - start)

    return Recorded


def score(cls: type, model, tokenizer, plan, limit: int) -> tuple[float, float, dict[str, float], list]:
    """(seconds of the whole lm-eval call, seconds of scoring alone, accuracy per task, requests)."""
    import lm_eval

    from lp_prune.evaluation.downstream import _quiet_lm_eval, task_manager
    from lp_prune.storage.hub import hub_offline

    requests: list = []
    clock: list[float] = []
    with hub_offline(plan.local_only), _quiet_lm_eval():
        lm = _recording(cls, requests, clock)(pretrained=model, tokenizer=tokenizer, batch_size=8)
        start = time.perf_counter()
        output = lm_eval.simple_evaluate(
            model=lm, tasks=list(plan.tasks), task_manager=task_manager(plan), limit=limit,
            random_seed=None, numpy_random_seed=None, torch_random_seed=None,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    accuracy = {task: values.get("acc,none") for task, values in output["results"].items()}
    return seconds, sum(clock), accuracy, requests


def items_of(requests: list) -> list[tuple[int, list[int]]]:
    """(context length, [continuation lengths]) per distinct context."""
    by_context: dict[tuple[int, ...], list[int]] = {}
    for _, context, continuation in requests:
        by_context.setdefault(tuple(context), []).append(len(continuation))
    return [(len(context), lengths) for context, lengths in by_context.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="proxy", help="lp_prune task names or shorthands (default: proxy)")
    parser.add_argument("--limit", type=int, default=8, help="items per task")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline-focused", type=Path, help="another version's focused_lm.py, timed too")
    parser.add_argument("--out", help="results folder (default: benchmarks/results/<timestamp>)")
    args = parser.parse_args(argv)
    import_lp_prune()
    from lm_eval.models.huggingface import HFLM

    from lp_prune.config import ModelConfig
    from lp_prune.evaluation.downstream import plan_tasks
    from lp_prune.evaluation.focused_lm import FocusedHFLM
    from lp_prune.languages import LANGUAGES
    from lp_prune.models.loading import load_model, load_tokenizer_and_config

    config = ModelConfig(name="gemma3-270m", dtype="float32")
    tokenizer, model_config = load_tokenizer_and_config(config)
    model = load_model(config).eval()
    plan = plan_tasks(args.tasks.split(","), LANGUAGES, 0.2)
    scorers: dict[str, type] = {"lp_prune": FocusedHFLM, "lm-eval HFLM": HFLM}
    if args.baseline_focused:
        scorers["baseline FocusedHFLM"] = _load_class(args.baseline_focused)

    rates = [matmul_rate.measure(reps=5)["matmul_gflops"]]
    for name, cls in scorers.items():  # warm-up: lm-eval's task loading, caches, first-call costs
        progress(f"warm-up: {name}")
        score(cls, model, tokenizer, plan, 1)
    runs: dict[str, list[tuple[float, float, dict[str, float]]]] = {name: [] for name in scorers}
    requests: list = []
    for repeat in range(args.repeats):
        for name, cls in scorers.items():
            progress(f"{name}, repeat {repeat + 1}")
            seconds, scoring, accuracy, requests = score(cls, model, tokenizer, plan, args.limit)
            runs[name].append((seconds, scoring, accuracy))
    rates.append(matmul_rate.measure(reps=5)["matmul_gflops"])
    rate = sum(rates) / len(rates)

    work = flops.scoring_flops(model_config.to_dict(), items_of(requests))
    limit_s = work["total"] / (rate * 1e9)
    lines = [
        f"{work['items']} items ({work['requests']} requests) of {len(plan.tasks)} tasks; least work "
        f"{work['total'] / 1e12:.3f} TFLOP (body tokens {work['body_tokens']}, head positions "
        f"{work['head_positions']}); matmul rate {rate:.1f} GFLOP/s (runs: {', '.join(f'{r:.1f}' for r in rates)}); "
        f"limit {limit_s:.1f} s",
        "",
        "| scorer | lm-eval call s (runs) | scoring s | items/s (scoring) | share of the FLOP limit: scoring"
        " / whole call | accuracy agrees with lp_prune |",
        "|---|---|---|---|---|---|",
    ]
    reference = runs["lp_prune"][0][2]
    for name, results in runs.items():
        middle = sorted(results, key=lambda run: run[1])[len(results) // 2]
        seconds, scoring = middle[0], middle[1]
        agrees = all(
            abs((acc.get(task) or 0) - (reference.get(task) or 0)) < 1e-9 for *_, acc in results for task in reference
        )
        lines.append(
            f"| {name} | {fmt(seconds, 1)} ({', '.join(fmt(run[0], 1) for run in results)}) | {fmt(scoring, 1)} | "
            f"{work['items'] / scoring:.2f} | {limit_s / scoring:.2f} / {limit_s / seconds:.2f} | {agrees} |"
        )
    lines += ["", "accuracy per task (lp_prune): " + ", ".join(f"{t} {fmt(a, 3)}" for t, a in reference.items())]
    report = {"machine": machine_info(), "matmul_gflops": rates, "flops": work, "limit_s": limit_s, "runs": runs}
    write_report(results_dir(args.out), report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
