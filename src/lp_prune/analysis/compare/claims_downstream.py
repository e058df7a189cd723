"""C3: target-language calibration does not consistently improve downstream accuracy on that language.

Cells are (task, language) pairs: a task of language L read on L's own calibration row and on the other
target-language rows. Per cell, the paired per-item difference of L's row minus the mean of the others
(differences.py; unpaired with combined stderrs when items were not kept). Decision:

- every cell a gain beyond Z stderrs: a consistent improvement, so not supported;
- some cell rules an improvement out (its upper bound, mean + z stderr, below MIN_GAIN): supported.
  "Some cell of k" is k chances for noise, so z is Bonferroni's over the cells (one-sided 2.5% for
  the family, never below Z): with 21 cells z = 3.04, and a claim does not rest on the one cell that
  chance put low;
- otherwise the data cannot tell: inconclusive, with the smallest gain each cell could detect
  (80% power) and a sign test over the cells for the direction.

Probe tasks where the dense model is not above chance test nothing and are left out (named in the evidence).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from statistics import NormalDist
from typing import Any

from lp_prune.analysis.compare.differences import Z, is_finite, target_difference
from lp_prune.analysis.compare.targets import TargetRows
from lp_prune.analysis.compare.verdicts import INCONCLUSIVE, NO_DATA, NOT_SUPPORTED, SUPPORTED, Finding
from lp_prune.config.tasks import probe_family
from lp_prune.evaluation.probe import CHANCE

POWER_Z = 2.8  # z(0.975) + z(0.8)
MIN_GAIN = 0.02  # two points of accuracy: a smaller gain is no improvement worth the name


def not_above_chance(task: str, dense: float | None, stderr: float | None) -> bool:
    """A probe task where the dense model does not score above guessing by Z stderrs (or below it):
    it cannot show what pruning or calibration costs. Other tasks: False (their chance is not ours)."""
    if probe_family(task) is None or not is_finite(dense):
        return False
    return dense - CHANCE <= Z * (stderr if is_finite(stderr) else 0.0)


def sign_test(positive: int, negative: int) -> float:
    """Two-sided binomial p-value of `positive` successes in positive + negative fair coin flips."""
    n = positive + negative
    if n == 0:
        return math.nan
    k = min(positive, negative)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def c3_downstream_gains(
    targets: TargetRows,
    accuracy: Mapping[str, Mapping[str, float]],
    stderr: Mapping[str, Mapping[str, float]],
    items: Mapping[str, Mapping[str, Mapping[Any, float]]],
    metrics: Mapping[str, str],
    task_language: Callable[[str], str | None],
) -> Finding:
    """accuracy / stderr: compare's {row: {task: score}}; items: {row: {task: {item id: score}}}."""
    labels = {lang: runs[0].recipe for lang, runs in targets.rows.items()}
    dense, dense_se = accuracy.get("dense", {}), stderr.get("dense", {})
    cells: dict[str, dict[str, Any]] = {}
    skipped = []
    for task in sorted({task for label in labels.values() for task in accuracy.get(label, {})}):
        lang = task_language(task)
        others = [label for other, label in labels.items() if other != lang and task in accuracy.get(label, {})]
        if lang not in labels or task not in accuracy.get(labels[lang], {}) or not others:
            continue
        if not_above_chance(task, dense.get(task), dense_se.get(task)):
            skipped.append(task)
            continue
        diff = target_difference(task, labels[lang], others, accuracy, stderr, items)
        if diff is None:
            continue
        cells[task] = {
            "language": lang,
            "metric": metrics.get(task, "acc"),
            "own": accuracy[labels[lang]][task],
            "mean": diff.mean,
            "stderr": diff.stderr,
            "n": diff.n,
            "paired": diff.paired,
            "outcome": diff.outcome,
            "detectable": POWER_Z * diff.stderr if is_finite(diff.stderr) else math.nan,
            "text": f"{lang} {task} ({metrics.get(task, 'acc')}): {diff.text()}",
        }
    if not cells:
        reason = "Needs downstream results (eval.tasks) of runs calibrated on a task's language and others."
        if skipped:
            reason += f" Left out, the dense model not above chance: {', '.join(skipped)}."
        return Finding("C3", NO_DATA, reason)
    z = family_z(len(cells))
    for cell in cells.values():
        cell["ruled_out"] = is_finite(cell["stderr"]) and cell["mean"] + z * cell["stderr"] < MIN_GAIN
    return _verdict(cells, skipped, targets, z)


def family_z(cells: int) -> float:
    """The bound's z for `cells` chances: one-sided 2.5% for them all together (Bonferroni), at least Z."""
    return max(Z, NormalDist().inv_cdf(1 - 0.025 / cells))


def _verdict(cells: dict[str, dict[str, Any]], skipped: list[str], targets: TargetRows, z: float) -> Finding:
    gains = [t for t, c in cells.items() if c["outcome"] == "gain"]
    ruled = [t for t, c in cells.items() if c["ruled_out"]]
    positive = sum(c["mean"] > 0 for c in cells.values())
    negative = sum(c["mean"] < 0 for c in cells.values())
    p = sign_test(positive, negative)
    detectable = [c["detectable"] for c in cells.values() if is_finite(c["detectable"])]
    if len(gains) == len(cells):
        verdict, decision = NOT_SUPPORTED, "every cell improves beyond noise"
    elif ruled:
        bound = f"mean + {z:.2f} stderr below {MIN_GAIN:g}, z for {len(cells)} cells"
        verdict, decision = (
            SUPPORTED,
            f"an improvement of {MIN_GAIN:g} or more is ruled out ({bound}) in {', '.join(ruled)}",
        )
    else:
        verdict = INCONCLUSIVE
        decision = f"no cell rules an improvement out (mean + {z:.2f} stderr, z for {len(cells)} cells)" + (
            f"; the cells detect gains of {statistics.median(detectable):.3f} (median, 80% power) or more"
            if detectable
            else ""
        )
    evidence = (
        f"Own-language calibration minus the mean of the other languages, per cell: "
        f"{'; '.join(c['text'] for c in cells.values())}. Gains beyond Z = {Z:g}: {len(gains)} of {len(cells)}; "
        f"direction {positive} up / {negative} down (sign test p = {p:.2f}). Decision: {decision}."
    )
    if skipped:
        evidence += f" Left out, the dense model not above chance: {', '.join(skipped)}."
    details = {"cells": cells, "sign_test_p": p, "left_out_at_chance": skipped, "bound_z": z}
    return Finding("C3", verdict, f"{evidence} {targets.note()}".strip(), details)
