"""The study's power plan against independent references: the closed-form standard error of a mean of
paired differences, simulated C3 data pooled by the verdict engine itself (the plan's detectable
effect must be found about 80% of the time, and a null about 5%), and a pilot record read back."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from lp_prune.analysis.compare.differences import TaskScores, pool
from lp_prune.analysis.compare.stats import pooled_sd
from lp_prune.analysis.plan import GridSizes, Pilot, Targets, c3_detectable, c3_items_needed, make_plan


def pilot(item_sd: float, draw_sd: float, **extra) -> Pilot:
    return Pilot(
        item_sd,
        draw_sd,
        "planted",
        extra.get("per_draw_sd", {}),
        extra.get("phase_s", {}),
        extra.get("sizes", {}),
        extra.get("matmul_gflops"),
    )


def test_without_draw_noise_the_detectable_effect_is_the_closed_form_one():
    sizes = GridSizes(items_per_cell=100, draws=2, families={"a": 300}, rows=7)
    se = 0.5 / math.sqrt(100 * 7)  # a mean over 7 cells of 100 paired differences of SD 0.5
    # normal approximation (df 693): (z_0.975 + z_0.8) x se, within the t correction
    expected = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * se
    assert c3_detectable(pilot(0.5, 0.0), sizes) == pytest.approx(expected, rel=0.01)


def test_more_items_or_draws_never_detect_less():
    noisy = pilot(0.3, 0.05)
    base = GridSizes(items_per_cell=20, draws=2, families={"a": 500, "b": 500}, rows=7)
    by_items = [c3_detectable(noisy, GridSizes(n, 2, base.families, 7)) for n in (20, 50, 100, 400)]
    by_draws = [c3_detectable(noisy, GridSizes(50, d, base.families, 7)) for d in (2, 3, 5)]
    assert by_items == sorted(by_items, reverse=True) and by_draws == sorted(by_draws, reverse=True)
    # draw noise does not shrink with items: a floor more items cannot pass
    assert by_items[-1] > c3_detectable(pilot(0.3, 0.0), GridSizes(400, 2, base.families, 7))


def test_items_needed_is_the_smallest_size_that_reaches_the_target():
    sizes = GridSizes(items_per_cell=10, draws=3, families={"a": 1000}, rows=7)
    p = pilot(0.4, 0.02)
    needed = c3_items_needed(p, sizes, 0.06)
    assert needed is not None
    at = GridSizes(needed, 3, sizes.families, 7)
    below = GridSizes(needed - 1, 3, sizes.families, 7)
    assert c3_detectable(p, at) <= 0.06 < c3_detectable(p, below)
    assert c3_items_needed(p, GridSizes(10, 3, {"a": needed - 1}, 7), 0.06) is None  # the family runs out


def simulated_cell(rng, own: int, rows: int, draws: int, items: int, effect: float, item_sd: float, draw_sd: float):
    """Per-item scores of every row and draw: the own row shifted by `effect`; each (row, draw) shifted
    by draw noise; each item's contrast noise of SD `item_sd` (split over the rows' independent
    per-item noise so that the own-minus-mean-of-others contrast has that SD)."""
    base = rng.normal(0.5, 0.2, items)
    per_row_sd = item_sd / math.sqrt(1 + 1 / (rows - 1))
    arrays = {}
    for row in range(rows):
        row_items = base + rng.normal(0, per_row_sd, items) + (effect if row == own else 0.0)
        arrays[str(row)] = np.array([row_items + rng.normal(0, draw_sd) for _ in range(draws)])
    draw_means = {row: [float(a) for a in array.mean(axis=1)] for row, array in arrays.items()}
    sd, df = pooled_sd(list(draw_means.values()))
    items_by_row = {row: array.mean(axis=0) for row, array in arrays.items()}
    scores = TaskScores("t", draw_means, items_by_row, {}, sd**2, df)
    others = [str(r) for r in range(rows) if r != own]
    return scores.contrast({str(own): 1.0, **{o: -1.0 / len(others) for o in others}})


@pytest.mark.parametrize(("shift", "low", "high"), [(1.0, 0.72, 0.88), (0.0, 0.01, 0.10)])
def test_the_engine_detects_the_planned_effect_about_eighty_percent_of_the_time(shift, low, high):
    rows, draws, items, item_sd, draw_sd = 7, 2, 40, 0.3, 0.03
    sizes = GridSizes(items, draws, {"a": items}, rows)
    effect = shift * c3_detectable(pilot(item_sd, draw_sd), sizes)
    rng = np.random.default_rng(0)
    simulations, detected = 300, 0
    for _ in range(simulations):
        cells = [simulated_cell(rng, own, rows, draws, items, effect, item_sd, draw_sd) for own in range(rows)]
        pooled = pool(cells, draw_df_cap=rows * (draws - 1), spread=(math.nan, 0)).estimate
        detected += pooled.direction() != "within noise"
    assert low < detected / simulations < high


def test_a_pilot_record_in_the_older_form_gives_item_and_draw_noise():
    cells = {f"t_{lang}": {"language": lang, "paired": True, "n": 20, "stderr": 0.05} for lang in ("ar", "de")}
    record = {
        "findings": {"s": [{"claim": "C3", "details": {"cells": cells, "left_out_at_chance": []}}]},
        "draw_spreads": [
            {"number": "accuracy", "values": [0.30, 0.34]},  # variance 0.0008
            {"number": "accuracy", "values": [0.50, 0.50]},  # variance 0
        ],
        "resources": {"runs": 4, "runs_time_s": 400.0, "analysis_time_s": 40.0},
        "provenance": {"machine": {"matmul_gflops": 200.0}},
    }
    p = Pilot.from_record(record)
    assert p.item_sd == pytest.approx(0.05 * math.sqrt(20))
    assert p.draw_sd == pytest.approx(math.sqrt(0.0004 * 1))  # one task per language
    assert p.phase_s == {"runs (all phases)": 400.0, "analyze": 40.0}


def test_the_plan_projects_phases_by_work_and_matmul_rate():
    p = pilot(
        0.3,
        0.03,
        phase_s={"prune": 100.0, "downstream_pruned": 200.0},
        sizes={"runs": 2, "items_per_run": 70},
        matmul_gflops=400.0,
    )
    sizes = GridSizes(20, 2, {"a": 20}, rows=7)  # 140 items per run: twice the pilot's
    plan = make_plan(p, sizes, Targets(), grid_runs=4, matmul_gflops=200.0)
    assert plan.phases["prune"] == pytest.approx(100.0 * 2 * 2)  # twice the runs, half the rate
    assert plan.phases["downstream_pruned"] == pytest.approx(200.0 * 2 * 2 * 2)  # and twice the items
