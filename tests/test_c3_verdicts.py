"""C3 (downstream gains of own-language calibration) and Q1 (does the effect depend on the task type),
on planted runs in memory: draw noise beside item noise, the pooled equivalence test, the cells that
differ, another language better under Holm, and the error rates of simulated nulls."""

import math
from pathlib import Path

import numpy as np
import pytest

from lp_prune.analysis.compare import findings as fd
from lp_prune.analysis.compare.claims_downstream import c3_downstream_gains
from lp_prune.analysis.compare.claims_task_type import DIFFERS, NO_DIFFERENCE, q1_task_type, task_type
from lp_prune.analysis.compare.differences import Noise, heterogeneity, pool, satterthwaite
from lp_prune.analysis.compare.stats import Estimate
from lp_prune.analysis.compare.tables import Comparison
from lp_prune.analysis.compare.targets import target_rows
from lp_prune.analysis.runs import Run
from lp_prune.config import RunConfig
from lp_prune.config.tasks import task_language
from lp_prune.tracking.summary import RunSummary

LANGS = ("de", "en", "sw")
PROXY = {lang: f"lp_prune_proxy_{lang}" for lang in LANGS}
BELEBELE = {"de": "belebele_deu_Latn", "en": "belebele_eng_Latn", "sw": "belebele_swh_Latn"}


def run(lang, seed, pruned, dense=None) -> Run:
    config = RunConfig()
    config.data.calibration_language, config.data.seed = lang, seed
    downstream = {"pruned": pruned} | ({"dense": dense} if dense else {})
    summary = RunSummary(
        model="m", method="wanda", pattern="unstructured", target_sparsity=0.5, calibration_language=lang,
        nsamples=4, seqlen=8, modules=[], perplexity={"pruned": {}}, downstream=downstream,
    )  # fmt: skip
    return Run(Path(f"/planted/{lang}-s{seed}"), config, summary)


def result(scores) -> dict:
    return {
        "acc": float(np.mean(scores)),
        "items": {"ids": list(range(len(scores))), "acc": [float(s) for s in scores]},
    }


def shifted(n: int, effect: float) -> list[int]:
    """Half of n items right; `effect` x n more (or fewer) right, always the first such items."""
    scores = [int(i % 2 == 0) for i in range(n)]
    k = round(abs(effect) * n)
    flip = [i for i in range(n) if scores[i] == (0 if effect > 0 else 1)][:k]
    for i in flip:
        scores[i] = 1 - scores[i]
    return scores


def plant(effects, draws=2, n=400, langs=LANGS) -> list[Run]:
    """effects: {task: {row: shift}} (a shift: a number, or one per draw); rows not named score the base."""
    runs = []
    for lang in langs:
        for d in range(draws):
            pruned = {}
            for task, shifts in effects.items():
                shift = shifts.get(lang, 0.0)
                pruned[task] = result(shifted(n, shift[d] if isinstance(shift, list | tuple) else shift))
            runs.append(run(lang, d, pruned))
    return runs


def own(effect, tasks=PROXY) -> dict:
    return {task: {lang: effect} for lang, task in tasks.items()}


def c3(runs, margin=0.02):
    return c3_downstream_gains(target_rows(runs), task_language, margin)


def q1(runs, margin=0.02):
    return q1_task_type(target_rows(runs), task_language, margin)


# --- the noise of a cell --------------------------------------------------------------------------------------


def test_draws_at_plus_12_and_minus_4_are_no_consistent_gain():
    """Item means over draws read +0.04 with a small item stderr in every cell; the draws themselves
    disagree (+0.12, -0.04), and with that noise the cells cannot tell."""
    found = c3(plant(own([0.12, -0.04])))
    assert found.verdict == fd.INCONCLUSIVE, found.evidence
    for cell in found.details["cells"].values():
        assert cell["effect"] == pytest.approx(0.04)
        assert cell["draw_effects"] == pytest.approx([0.12, -0.04])
        low, high = cell["interval"]
        assert low < 0 < high  # within noise, where item noise alone would read a gain
        # draw variance pooled over the three rows (only the own row varies), times 1/2 + (1/2 + 1/2) / 4
        draw_var = (0.08**2 * 2) / 3 * (1 / 2 + 1 / 4)
        assert cell["se"] ** 2 > draw_var and cell["se"] ** 2 < draw_var * 1.1
    assert "own draws +0.120, -0.040" in found.evidence


def test_satterthwaite_and_pool_by_hand():
    assert satterthwaite([(1.0, 4), (1.0, 4)]) == pytest.approx(8)
    assert satterthwaite([(1.0, math.inf), (0.0, 3)]) == math.inf
    a, b = Noise(0.1, 0.0004, 99, 0.0005, 3), Noise(0.0, 0.0001, 99, 0.0, 3)
    # cells count once; the model's variance (0.0009 + 0.0001) / 4 is below the cells' dispersion
    # var(0.1, 0) / 2 = 0.0025, which the mean then carries, on df 1
    p = pool([a, b], draw_df_cap=3)
    assert p.effect == pytest.approx(0.05) and p.estimate.se == pytest.approx(0.05) and p.estimate.df == 1
    alike = pool([a, Noise(0.1, 0.0001, 99, 0.0, 3)], draw_df_cap=3)
    assert alike.dispersion is None and alike.var == pytest.approx(0.001 / 4)
    item_df = satterthwaite([(0.0004 / 4, 99), (0.0001 / 4, 99)])  # the cells' item parts
    assert alike.estimate.df == pytest.approx(satterthwaite([(0.0005 / 4, item_df), (0.0005 / 4, 3)]))


# --- the decision ----------------------------------------------------------------------------------------------


def test_all_but_one_cell_at_six_points_is_a_consistent_gain():
    """Twelve cells gain 6 points on 3,000 items, one does not: one cell ruling a gain out no longer
    decides; the pooled gain is beyond the margin and no cell is worse: not supported."""
    langs = ("ar", "de", "en", "es", "ru", "sw", "zh")
    tasks = [f"lp_prune_proxy_{lang}" for lang in langs] + [
        "belebele_arb_Arab", "belebele_deu_Latn", "belebele_eng_Latn", "belebele_spa_Latn", "belebele_rus_Cyrl",
        "belebele_swh_Latn",
    ]  # fmt: skip
    effects = {task: {task_language(task): 0.06 if i else 0.0} for i, task in enumerate(tasks)}
    found = c3(plant(effects, n=3000, langs=langs))
    assert len(found.details["cells"]) == 13 and found.verdict == fd.NOT_SUPPORTED, found.evidence
    assert found.details["worse_holm"] == []


def test_an_exact_null_over_enough_items_is_supported_with_repeats_only():
    found = c3(plant(own(0.0)))
    assert found.verdict == fd.SUPPORTED, found.evidence
    assert "ruled out" in found.evidence and "TOST equivalent" in found.evidence
    single = c3(plant(own(0.0), draws=1))
    assert single.verdict == fd.INCONCLUSIVE and "no repeated draws of their own" in single.evidence
    assert "item noise only" in single.evidence


def test_low_power_is_inconclusive_with_what_the_data_could_confirm():
    found = c3(plant(own(0.0), n=20))
    assert found.verdict == fd.INCONCLUSIVE, found.evidence
    assert "could confirm a margin of" in found.evidence and "minimum detectable effect" in found.evidence


def test_a_loss_beyond_the_margin_supports_and_a_worse_cell_blocks_not_supported():
    assert c3(plant(own(-0.1))).verdict == fd.SUPPORTED
    effects = own(0.2) | {PROXY["sw"]: {"sw": -0.2}}
    found = c3(plant(effects))
    assert found.details["worse_holm"] == [PROXY["sw"]] and found.verdict != fd.NOT_SUPPORTED


def test_unpaired_fallback_with_lm_eval_stderrs():
    task = PROXY["en"]
    scores = {"en": (0.8, 0.04), "sw": (0.5, 0.05), "de": (0.6, 0.05)}
    runs = [run(lang, 0, {task: {"acc": acc, "acc_stderr": se}}) for lang, (acc, se) in scores.items()]
    found = c3(runs)
    cell = found.details["cells"][task]
    assert cell["effect"] == pytest.approx(0.25) and not cell["paired"] and math.isinf(cell["df"])
    assert cell["se"] == pytest.approx(math.sqrt(0.04**2 + (0.05**2 + 0.05**2) / 4))
    assert found.verdict == fd.NOT_SUPPORTED and "item noise only" in found.evidence
    assert "unpaired, lm-eval stderrs" in found.evidence


def test_probe_tasks_at_chance_are_left_out_and_named():
    task = "lp_prune_probe_capitals_en"
    dense = {task: {"acc": 0.26, "acc_stderr": 0.05}}
    runs = [run(lang, 0, {task: {"acc": 0.9 if lang == "en" else 0.3, "acc_stderr": 0.05}}, dense) for lang in LANGS]
    found = c3(runs)
    assert found.verdict == fd.NO_DATA and task in found.evidence


# --- the second half: another language better, cells that differ --------------------------------------------------


@pytest.mark.parametrize("extra, better", [(4, []), (16, ["de"])])
def test_another_language_better_is_counted_under_holm(extra, better):
    """de calibration answers `extra` of 400 English items more: 4 gives one-sided p = 0.023, below 0.05
    alone but not among six cell x language pairs (Holm); 16 passes."""
    effects = own(0.0) | {PROXY["en"]: {"de": extra / 400}}
    found = c3(plant(effects))
    entry = found.details["other_language_better"][PROXY["en"]]
    assert entry["best_other"] == "de" and entry["better"] == better
    assert f"another language is better in {len(better)} of 3 cells" in found.evidence


def test_heterogeneity_between_cells():
    differ = c3(plant({PROXY["de"]: {"de": 0.2}, PROXY["en"]: {"en": 0.0}, PROXY["sw"]: {"sw": -0.2}}))
    assert differ.details["heterogeneity"]["p"] < 1e-6 and "Cochran's Q" in differ.evidence
    alike = c3(plant(own([0.05, 0.07])))
    assert alike.details["heterogeneity"]["p"] > 0.5
    one = heterogeneity([Estimate(0.1, 0.01, math.inf), Estimate(0.1, 0.01, math.inf)])
    assert one.q == 0 and one.p == 1 and math.isinf(one.welch_df)


# --- Q1: task types --------------------------------------------------------------------------------------------


def test_task_types():
    assert task_type("lp_prune_proxy_sw") == "next sentence" == task_type("hellaswag_de")
    assert task_type("lp_prune_probe_arithmetic_en") == "arithmetic"
    assert task_type("belebele_fra_Latn") == "reading" and task_type("m_mmlu_de") == "knowledge/reasoning"
    assert task_type("arc_challenge") == "knowledge/reasoning" and task_type("something") is None


def test_q1_with_and_without_a_difference_between_types():
    differs = q1(plant(own(0.10) | own(0.0, BELEBELE)))
    assert differs.verdict == DIFFERS, differs.evidence
    assert set(differs.details["types"]) == {"next sentence", "reading"}
    same = q1(plant(own(0.0) | own(0.0, BELEBELE)))
    assert same.verdict == NO_DIFFERENCE, same.evidence
    assert q1(plant(own(0.0) | own(0.0, BELEBELE), n=20)).verdict == fd.INCONCLUSIVE
    assert q1(plant(own(0.0))).verdict == fd.NO_DATA


def test_q1_is_among_compare_findings():
    runs = plant(own(0.0) | own(0.0, BELEBELE))
    comparison = Comparison(model="m", runs=runs, perplexity={runs[0].setting: {}})
    (found,) = fd.comparison_findings(comparison).values()
    assert [f.claim for f in found][-2:] == ["C8", "Q1"] and found[-1].verdict == NO_DIFFERENCE
    assert next(f for f in found if f.claim == "C3").verdict == fd.SUPPORTED


# --- simulated nulls -------------------------------------------------------------------------------------------


def simulated(rng: np.random.Generator, gains: dict[str, float], n=60, draws=3, draw_sd=0.02) -> list[Run]:
    """Proxy and Belebele tasks of the three languages; the own row gains gains[type] on each; every
    (row, draw, task) moves by N(0, draw_sd); each run answers 10% of items at random."""
    tasks = {**{t: "next sentence" for t in PROXY.values()}, **{t: "reading" for t in BELEBELE.values()}}
    latent = {task: rng.random(n) for task in tasks}
    runs = []
    for lang in LANGS:
        for d in range(draws):
            pruned = {}
            for task, kind in tasks.items():
                bar = 0.6 + rng.normal(0, draw_sd) + (gains[kind] if task_language(task) == lang else 0.0)
                scores = (latent[task] < bar).astype(float)
                noise = rng.random(n) < 0.1
                scores[noise] = (rng.random(noise.sum()) < 0.5).astype(float)
                pruned[task] = result(scores)
            runs.append(run(lang, d, pruned))
    return runs


def test_simulated_null_rates():
    """400 plants each: C3 false (a true gain of twice the margin in every cell) reads 'supported' at
    most 5% of the time; equal effects in every task type read 'differs by task type' at most 5%."""
    rng = np.random.default_rng(20240611)
    plants = 400
    gain = {"next sentence": 0.04, "reading": 0.04}
    supported = sum(c3(simulated(rng, gain)).verdict == fd.SUPPORTED for _ in range(plants))
    same = {"next sentence": 0.01, "reading": 0.01}
    differs = sum(q1(simulated(rng, same)).verdict == DIFFERS for _ in range(plants))
    assert supported / plants <= 0.05 and differs / plants <= 0.05, (supported, differs)
