"""Holm's step-down in lp_prune's verdict statistics decides as statsmodels' multipletests does."""

import math
import random

from statsmodels.stats.multitest import multipletests

from lp_prune.analysis.compare.stats import holm


def test_holm_matches_statsmodels_on_random_families():
    rng = random.Random(0)
    for size in (1, 2, 3, 5, 10, 20):  # few families: every multipletests call runs gc.collect()
        for _ in range(2):
            pvalues = [rng.random() ** 3 for _ in range(size)]
            expected, *_ = multipletests(pvalues, alpha=0.05, method="holm")
            assert holm(pvalues) == [bool(r) for r in expected]


def test_holm_edges():
    assert holm([]) == []
    assert holm([0.05 / 3, 0.025, 0.05]) == [True, True, True]  # p == alpha / (m - k) is rejected
    assert holm([0.01, 0.03, math.nan]) == [True, False, False]  # NaN counts in m, never rejected
    assert holm([0.04, 0.001], alpha=0.1) == [True, True]
