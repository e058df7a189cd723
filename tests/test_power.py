"""The power plan's arithmetic against independent references: statsmodels' t-test power, and
simulated rejection rates of the verdicts' own tests."""

import math
import random

import pytest
from statsmodels.stats.power import TTestIndPower, TTestPower

from lp_prune.analysis.compare.stats import Estimate, mean_estimate
from lp_prune.analysis.power import detectable_effect, draws_for, items_for, power


@pytest.mark.parametrize(("effect_size", "n"), [(0.5, 10), (1.0, 5), (0.3, 40)])
def test_power_matches_statsmodels_one_sample_t(effect_size, n):
    # a mean of n values with SD 1: se 1 / sqrt(n), df n - 1
    expected = TTestPower().power(effect_size=effect_size, nobs=n, alpha=0.05, alternative="two-sided")
    assert power(effect_size, 1 / math.sqrt(n), n - 1) == pytest.approx(expected, abs=1e-6)


def test_draws_for_matches_statsmodels_two_sample_t_with_two_rows():
    # two rows only: the pooled floor's df is 2 (draws - 1), as statsmodels' two-sample t
    draws = draws_for(effect=1.0, sd=1.0, rows=2)
    reference = TTestIndPower().solve_power(effect_size=1.0, alpha=0.05, power=0.8, alternative="two-sided")
    assert draws == math.ceil(reference)


def test_detectable_effect_is_detected_at_eighty_percent():
    se, df = 0.02, 7
    effect = detectable_effect(se, df)
    assert power(effect, se, df) == pytest.approx(0.8, abs=1e-6)
    assert Estimate(0.0, se, df).detectable() == pytest.approx(effect, rel=0.02)  # the engine's quick form


def test_items_for_gives_the_power_it_promises_in_simulation():
    # paired per-item differences of -1 / 0 / +1 with probabilities 0.2 / 0.5 / 0.3: mean 0.1, SD 0.7
    items = items_for(effect=0.1, item_sd=0.7)
    assert items is not None and 350 < items < 420
    rng = random.Random(0)
    runs = 400
    rejected = 0
    for _ in range(runs):
        d = [float(rng.choices((-1, 0, 1), weights=(0.2, 0.5, 0.3))[0]) for _ in range(items)]
        rejected += mean_estimate(d).direction() == "better"
    assert 0.74 < rejected / runs < 0.86  # 80% planned; binomial SD over 400 runs is 0.02


def test_items_cannot_beat_draw_noise():
    assert items_for(effect=0.02, item_sd=0.5, cells=1, draw_var=0.02**2) is None
    assert items_for(effect=0.02, item_sd=0.5, cells=20, draw_var=0.02**2) is not None
