"""C4 on planted IoU tables: the ranking judged on the study's measure (cross-language IoU, paired over
layers), the same-language floor as the check against draw noise, the early-layer and first-layer
parts, and a simulated null that must not come out "supported" more than 5% of the time."""

import random

import pytest
from scipy import stats as sps

from lp_prune.analysis.compare import findings as fd
from lp_prune.analysis.compare.claims_masks import c4_least_consistent_masks, paired, two_sample

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
STUDY = ("o_proj", "down_proj")
# The published SparseGPT means (down_proj 0.776 < o_proj 0.816 < up_proj 0.858), the rest higher.
PUBLISHED = {
    "q_proj": 0.90,
    "k_proj": 0.90,
    "v_proj": 0.89,
    "o_proj": 0.816,
    "gate_proj": 0.859,
    "up_proj": 0.858,
    "down_proj": 0.776,
}


def _iou(cross, floor):
    return {"projection_layer": cross, "floor_projection_layer": floor, "chance": 1 / 3}


def plant(means, layers=32, noise=0.02, seed=0, early_drop=0.06, first_qkv=0.05, floor_gap=None, early_for=STUDY):
    """Cross-language IoU per projection and layer: `means` plus independent layer noise; the projections
    `early_for` `early_drop` lower in the first third of the layers (their mean kept), q/k/v `first_qkv`
    higher at layer 0. A floor `floor_gap` above the cross IoU (per projection or one number), or none."""
    rng = random.Random(seed)
    early = layers // 3
    cross = {}
    for proj, mean in means.items():
        drop = early_drop if proj in early_for else 0.0
        shift = [-drop * (1 - early / layers) if i < early else drop * early / layers for i in range(layers)]
        values = [mean + s + rng.gauss(0, noise) for s in shift]
        if proj in ("q_proj", "k_proj", "v_proj"):
            values[0] += first_qkv
        cross[proj] = values
    if floor_gap is None:
        return _iou(cross, {})
    gaps = floor_gap if isinstance(floor_gap, dict) else dict.fromkeys(means, floor_gap)
    floor = {p: [v + gaps[p] + rng.gauss(0, noise / 4) for v in cross[p]] for p in means}
    return _iou(cross, floor)


def test_published_ranking_holds_on_the_studys_measure():
    table = plant(PUBLISHED, floor_gap=0.05)
    found = c4_least_consistent_masks(table)
    assert found.details["parts"]["ranking"] == "holds", found.evidence
    assert list(found.details["projections"])[:3] == ["down_proj", "o_proj", "up_proj"]
    closest = found.details["tests"]["ranking"]["up_proj - o_proj"]
    low, high = closest["interval"]
    assert 0.025 < closest["effect"] < 0.06 and 0.003 < closest["se"] < 0.01 and closest["df"] == 31
    assert 0 < low < closest["effect"] < high
    assert found.verdict == fd.SUPPORTED, found.evidence
    assert "up_proj - o_proj" in found.evidence and "(t, df 31)" in found.evidence
    assert "intersection-union" in found.evidence and "Holm" in found.evidence


def test_raw_iou_decides_the_ranking_where_the_floor_adjusted_gap_disagrees():
    # gate_proj and up_proj lie furthest below their floors, yet o_proj / down_proj have the lowest IoU
    gaps = {p: 0.03 for p in PROJECTIONS} | {"gate_proj": 0.14, "up_proj": 0.12, "o_proj": 0.04, "down_proj": 0.05}
    table = plant(PUBLISHED, noise=0.01, floor_gap=gaps)
    found = c4_least_consistent_masks(table)
    assert found.details["parts"]["ranking"] == "holds"
    assert found.details["parts"]["floor_check"] == "passes"
    assert found.verdict == fd.SUPPORTED, found.evidence
    assert "Floor minus cross" in found.evidence and "gate_proj +0.14" in found.evidence


def test_a_projection_decidedly_below_o_proj_fails_the_ranking():
    means = PUBLISHED | {"up_proj": 0.76}  # up_proj below o_proj by 0.056
    found = c4_least_consistent_masks(plant(means, floor_gap=0.05))
    assert found.details["parts"]["ranking"] == "fails"
    assert found.verdict == fd.NOT_SUPPORTED
    failing = found.details["tests"]["ranking"]["up_proj - o_proj"]
    assert failing["below_holm"] and failing["effect"] < 0
    assert "below zero: up_proj - o_proj" in found.evidence
    # The study's own measure disagrees, so even without a floor: not supported.
    assert c4_least_consistent_masks(plant(means)).verdict == fd.NOT_SUPPORTED


def test_noisy_layers_leave_the_ranking_undecided():
    means = PUBLISHED | {"up_proj": 0.83, "gate_proj": 0.83}  # a small separation in layer noise of 0.1
    found = c4_least_consistent_masks(plant(means, layers=8, noise=0.1, early_drop=0.3, first_qkv=0.5, floor_gap=0.3))
    assert found.details["parts"]["ranking"] == "undecided", found.evidence
    assert found.verdict == fd.INCONCLUSIVE


def test_without_a_floor_the_claim_is_at_most_inconclusive():
    found = c4_least_consistent_masks(plant(PUBLISHED))
    parts = found.details["parts"]
    assert [parts[k] for k in ("ranking", "early", "first_layer", "floor_check")] == ["holds"] * 3 + ["not checked"]
    assert found.verdict == fd.INCONCLUSIVE
    assert "No same-language floor" in found.evidence and "draw noise is not excluded" in found.evidence
    small = c4_least_consistent_masks(_iou({"q_proj": [0.8, 0.8], "o_proj": [0.7, 0.8]}, {}))
    assert small.verdict == fd.INCONCLUSIVE and "No same-language floor" in small.evidence


def test_cross_iou_at_the_floor_is_draw_noise_not_language():
    gaps = {p: 0.05 for p in PROJECTIONS} | {"o_proj": 0.0}  # o_proj's IoU is all one language's draws reach
    found = c4_least_consistent_masks(plant(PUBLISHED, floor_gap=gaps))
    assert found.details["parts"]["ranking"] == "holds"
    assert found.details["parts"]["floor_check"] == "not passed"
    assert found.verdict == fd.INCONCLUSIVE
    assert "the cross-language IoU lies below its same-language floor" in found.evidence


def test_early_layers_part():
    found = c4_least_consistent_masks(plant(PUBLISHED, early_drop=-0.06, floor_gap=0.05))  # early layers higher
    assert found.details["parts"]["early"] == "fails" and found.verdict == fd.NOT_SUPPORTED
    found = c4_least_consistent_masks(plant(PUBLISHED, early_drop=0.0, floor_gap=0.05))
    assert found.details["parts"]["early"] in ("undecided", "fails")
    assert found.verdict != fd.SUPPORTED
    assert "later minus early (Welch)" in found.evidence


def test_first_layer_qkv_part():
    floor = {p: [0.9] * 6 for p in PROJECTIONS}
    cross = {
        "q_proj": [0.88, 0.88, 0.88, 0.88, 0.88, 0.88],
        "k_proj": [0.88, 0.87, 0.88, 0.87, 0.88, 0.87],
        "v_proj": [0.87, 0.88, 0.87, 0.88, 0.87, 0.88],
        "gate_proj": [0.62, 0.85, 0.86, 0.85, 0.86, 0.85],
        "up_proj": [0.60, 0.86, 0.85, 0.86, 0.85, 0.86],
        "o_proj": [0.50, 0.52, 0.70, 0.71, 0.72, 0.70],
        "down_proj": [0.52, 0.50, 0.71, 0.70, 0.70, 0.72],
    }
    found = c4_least_consistent_masks(_iou(cross, floor))
    assert found.verdict == fd.SUPPORTED, found.evidence
    for proj in ("q_proj", "k_proj", "v_proj"):  # the first layer's q/k/v the least consistent of layer 0
        cross[proj] = [0.40 + 0.01 * len(proj), *cross[proj][1:]]
    found = c4_least_consistent_masks(_iou(cross, floor))
    assert found.details["parts"]["first_layer"] == "fails" and found.verdict == fd.NOT_SUPPORTED
    # layer 0's gate_proj / up_proj as consistent as q/k/v: the others as a group no longer clearly below
    cross |= {p: [0.88, *cross[p][1:]] for p in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")}
    found = c4_least_consistent_masks(_iou(cross, floor))
    assert found.details["parts"]["first_layer"] == "undecided" and found.verdict == fd.INCONCLUSIVE


def test_welch_and_paired_estimates_match_scipy():
    a, b = [0.71, 0.74, 0.70, 0.73, 0.69], [0.60, 0.66, 0.59, 0.61]
    welch = two_sample(a, b)
    reference = sps.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert welch.p_greater() == pytest.approx(reference.pvalue) and welch.df == pytest.approx(reference.df)
    single = two_sample([0.5], b)  # one value: b's variance stands for both (pooled t, b's df)
    assert single.df == 3 and single.se == pytest.approx(sps.tstd(b) * (1 + 1 / 4) ** 0.5)
    pair = paired(a[:4], b)
    reference = sps.ttest_rel(a[:4], b, alternative="greater")
    assert pair.p_greater() == pytest.approx(reference.pvalue) and pair.df == 3


def _rates(means, plants=400, seed=7):
    """Share of plants per verdict and per state of the ranking, the noise redrawn each time. Every
    projection gets the early drop, so the paired differences are the layer noise alone and their t
    exact; the early and first-layer parts and the floor check are planted to hold."""
    counts = {}
    for i in range(plants):
        table = plant(
            means, 16, seed=seed * 100_003 + i, early_drop=0.08, first_qkv=0.1, floor_gap=0.05, early_for=means
        )
        found = c4_least_consistent_masks(table)
        for key in (found.verdict, f"ranking {found.details['parts']['ranking']}"):
            counts[key] = counts.get(key, 0) + 1 / plants
    return counts


def test_simulated_null_is_rarely_supported():
    """o_proj and down_proj equal to the rest in expectation: 'supported' at most 5% of 400 plants."""
    equal = dict.fromkeys(PROJECTIONS, 0.85)
    rates = _rates(equal)
    assert rates.get(fd.SUPPORTED, 0) <= 0.05, rates
    assert rates.get(fd.NOT_SUPPORTED, 0) <= 0.05 + 0.02, rates  # Holm over the 10: at most 5% family-wise
    # The least favourable null: up_proj as low as o_proj and down_proj, the rest far above.
    boundary = _rates(equal | {"o_proj": 0.80, "down_proj": 0.80, "up_proj": 0.80}, seed=11)
    assert boundary.get(fd.SUPPORTED, 0) <= 0.05, boundary
    # Power where the claim is true: o_proj and down_proj 0.03 below the rest (layer noise 0.02).
    power = _rates(equal | {"o_proj": 0.82, "down_proj": 0.82}, plants=100, seed=13)
    assert power.get(fd.SUPPORTED, 0) >= 0.9, power
