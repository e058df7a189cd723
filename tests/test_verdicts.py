"""Verdicts against their noise floor, on planted runs (in memory): each case reads what the data can
decide, and "inconclusive" where they cannot."""

import itertools
import math
import random
import statistics
from pathlib import Path

import pytest

from lp_prune.analysis.compare import findings as fd
from lp_prune.analysis.compare.claims_analysis import c2_highest_snr, c5_specific_only, c6_low_probability_shifts
from lp_prune.analysis.compare.claims_downstream import c3_downstream_gains, sign_test
from lp_prune.analysis.compare.claims_lape import c8_lape_survival
from lp_prune.analysis.compare.claims_perplexity import c1_lowest_perplexity, c7_related_languages
from lp_prune.analysis.compare.tables import Comparison
from lp_prune.analysis.compare.targets import AnalysedRun, target_rows
from lp_prune.analysis.compare.verdicts import contrast, repeat_floor
from lp_prune.analysis.result import AnalysisResult
from lp_prune.analysis.runs import Run
from lp_prune.config import RunConfig
from lp_prune.config.tasks import task_language
from lp_prune.tracking.summary import RunSummary

LANGS = ("de", "en", "sw")


def run(lang, seed=0, perplexity=None, source="packaged", statistics_rule="pooled", downstream=None) -> Run:
    config = RunConfig()
    config.data.calibration_language, config.data.seed, config.data.source = lang, seed, source
    config.prune.statistics = statistics_rule
    summary = RunSummary(
        model="m", method="wanda", pattern="unstructured", target_sparsity=0.5, calibration_language=lang,
        nsamples=4, seqlen=8, modules=[], perplexity={"pruned": perplexity or {}}, downstream=downstream,
    )  # fmt: skip
    return Run(Path(f"/planted/{lang}-{source}-{statistics_rule}-s{seed}"), config, summary)


def own_best(margin: float, spread: float, seeds=(0, 1), source="packaged") -> list[Run]:
    """Perplexity 10 on the own language and 10 x (1 + margin) on the others, each seed moved by +-spread."""
    runs = []
    for lang, seed in itertools.product(LANGS, seeds):
        shift = 1 + spread * (1 if seed % 2 else -1)
        values = {e: shift * (10.0 if e == lang else 10.0 * (1 + margin)) for e in LANGS}
        runs.append(run(lang, seed, values, source))
    return runs


# --- the noise floor -----------------------------------------------------------------------------------


def test_repeat_floor_is_the_pooled_sd_of_the_repeats():
    groups = [[1.0, 2.0, 4.0], [10.0, 12.0], [7.0]]  # a group of one adds nothing
    # pooled variance = (sum of squared deviations) / (n - groups): (4.667 + 2) / (3 + 2 - 2)
    ss = sum(sum((x - statistics.fmean(g)) ** 2 for x in g) for g in groups)
    floor = repeat_floor(groups)
    assert floor.df == 3 and floor.sd == pytest.approx(math.sqrt(ss / 3))
    assert not repeat_floor([[1.0], [2.0]]).exists
    c = contrast([1.0, 1.2], [[2.0, 2.2]], floor, higher_is_better=False)
    assert c.effect == pytest.approx(1.0) and c.se == pytest.approx(floor.sd * math.sqrt(1 / 2 + 1 / 2))


def test_sign_test_matches_the_binomial_tail():
    assert sign_test(3, 0) == pytest.approx(2 / 8)
    assert sign_test(9, 1) == pytest.approx(2 * (1 + 10) / 1024)
    assert sign_test(2, 2) == 1.0


# --- C1: every source counted, margins against the seed spread ---------------------------------------------


def test_c1_reads_the_study_data_source():
    found = c1_lowest_perplexity(own_best(margin=0.2, spread=0.01, source="mc4"))
    assert found.verdict == fd.SUPPORTED and "Calibration text: mc4." in found.evidence
    assert set(found.details["languages"]) == set(LANGS)


def test_c1_within_the_seed_spread_is_inconclusive():
    # own lower by 0.1% while two calibration draws move perplexity by +-4%: the data cannot tell
    assert c1_lowest_perplexity(own_best(margin=0.001, spread=0.04)).verdict == fd.INCONCLUSIVE
    # 20% lower at +-2%: t about 6 at df 3 (two draws of three rows), Holm over three languages
    assert c1_lowest_perplexity(own_best(margin=0.2, spread=0.02)).verdict == fd.SUPPORTED
    assert c1_lowest_perplexity(own_best(margin=-0.2, spread=0.02)).verdict == fd.NOT_SUPPORTED


def test_c1_without_repeats_is_at_most_inconclusive():
    found = c1_lowest_perplexity(own_best(margin=0.5, spread=0.0, seeds=(0,)))
    assert found.verdict == fd.INCONCLUSIVE and "no noise floor" in found.evidence


def test_c1_mixes_generated_text_and_rules_never_compete():
    runs = own_best(margin=0.2, spread=0.01)
    best_everywhere = {e: 1.0 for e in LANGS}
    runs += [
        run("en+sw", 0, best_everywhere),
        run("all", 0, best_everywhere),
        run("en", 0, best_everywhere, source="generated"),
        run("de", 0, best_everywhere, statistics_rule="balanced"),
    ]
    for order in (runs, runs[::-1]):
        found = c1_lowest_perplexity(order)
        assert found.verdict == fd.SUPPORTED
        assert {v["versus"] for v in found.details["languages"].values()} <= set(LANGS)


def test_runs_without_calibration_data_are_no_language_row(tmp_path):
    from lp_prune.analysis.compare.tables import perplexity_matrix
    from lp_prune.analysis.study_report import calibrated_on_a_language

    for method in ("magnitude", "rtn"):
        runs = own_best(margin=0.2, spread=0.01)  # the configs name a language each, as RTN's and magnitude's do
        for r in runs:
            r.summary.method = method
        assert {r.recipe for r in runs} == {"none"} and not any(map(calibrated_on_a_language, runs))
        assert list(perplexity_matrix(runs)) == ["none"]  # one row, not one per configured language
        assert c1_lowest_perplexity(runs).verdict == fd.NO_DATA
        assert c7_related_languages(runs).verdict == fd.NO_DATA


def test_target_rows_keep_repeats_and_read_one_source():
    runs = own_best(0.2, 0.01) + own_best(0.2, 0.01, source="mc4")[:2]
    rows = target_rows(runs)
    assert rows.source == "packaged" and len(rows.rows["en"]) == 2 and rows.left_out == ["de mc4"]


# --- C2 and C5 from the analysis, with repeats and mixes in either order --------------------------------------


def analysis_of(snr, lsar, lape=None, setting="s", method="wanda") -> tuple[AnalysisResult, list[AnalysedRun]]:
    entries = [
        {"key": key, "setting": setting, "recipe": key.split("-")[0], "calibration_language": key.split("-")[0],
         "target_language": key.split("-")[0] if key.split("-")[0] in LANGS else None, "source": "packaged",
         "analysed": True, "method": method}
        for key in snr
    ]  # fmt: skip
    result = AnalysisResult(
        model="m",
        languages=list(LANGS),
        runs=entries,
        snr_db=snr,
        lsar={"runs": lsar},
        lape={"runs": lape or {}},
        findings={},
    )
    return result, [AnalysedRun.from_entry(e) for e in entries]


def test_c2_averages_repeats_and_ignores_mixes_in_any_order():
    rng = random.Random(0)
    snr = {}
    for lang, seed in itertools.product(LANGS, (0, 1)):
        snr[f"{lang}-s{seed}"] = {e: [5.0, 20.0 + (3.0 if e == lang else 0.0) + rng.uniform(-0.3, 0.3)] for e in LANGS}
    snr["en+sw-s0"] = {e: [5.0, 40.0] for e in LANGS}  # a mix with the best SNR everywhere: not a language
    analysis, runs = analysis_of(snr, {})
    for order in (runs, runs[::-1], sorted(runs, key=lambda r: r.key)):
        found = c2_highest_snr(analysis, order)
        assert found.verdict == fd.SUPPORTED
    # a single calibration language cannot be "the highest" by construction
    analysis, runs = analysis_of({k: v for k, v in snr.items() if k.startswith("en-")}, {})
    assert c2_highest_snr(analysis, runs).verdict == fd.NO_DATA


def _lsar(specific: float, agnostic: float) -> dict:
    return {"specific": [specific, specific], "agnostic": [agnostic, agnostic]}


def test_c5_null_of_repeats_never_reads_supported():
    supported = 0
    for draw in range(20):
        rng = random.Random(draw)
        lsar, snr = {}, {}
        for lang, seed in itertools.product(LANGS, (0, 1)):  # one distribution: no language effect
            key = f"{lang}-s{seed}"
            lsar[key] = {"languages": {e: _lsar(rng.gauss(0.3, 0.02), rng.gauss(0.2, 0.01)) for e in LANGS}}
            snr[key] = {}
        analysis, runs = analysis_of(snr, lsar)
        supported += c5_specific_only(analysis, runs).verdict == fd.SUPPORTED
    assert supported == 0


def test_c5_specific_part_only_and_agnostic_differs():
    def planted(agnostic_effect: float):
        rng = random.Random(1)
        lsar = {}
        for lang, seed in itertools.product(LANGS, (0, 1)):
            lsar[f"{lang}-s{seed}"] = {
                "languages": {
                    e: _lsar(
                        0.30 - (0.05 if e == lang else 0) + rng.gauss(0, 0.001),
                        0.50 - (agnostic_effect if e == lang else 0) + rng.gauss(0, 0.001),
                    )
                    for e in LANGS
                }
            }
        return analysis_of({k: {} for k in lsar}, lsar)

    found = c5_specific_only(*planted(agnostic_effect=0.0))
    assert found.verdict == fd.SUPPORTED
    assert found.details["agnostic_minus_specific"]["outcome"] == "more"  # 0.5 vs ~0.28
    assert c5_specific_only(*planted(agnostic_effect=0.05)).verdict == fd.NOT_SUPPORTED


def test_c6_is_judged_over_runs():
    def bins(excess: float) -> dict:
        low = {"low": 0, "high": 0.1, "mean_abs_shift": 0.01 + excess, "all_neurons_mean_abs_shift": 0.01}
        return {"bins": [low]}

    lape = {f"{lang}-s0": bins(0.01 + 0.001 * i) for i, lang in enumerate(LANGS)}
    analysis, runs = analysis_of({k: {} for k in lape}, {}, lape)
    assert c6_low_probability_shifts(analysis, runs).verdict == fd.SUPPORTED
    analysis, runs = analysis_of({"en-s0": {}}, {}, {"en-s0": bins(0.01)})
    assert c6_low_probability_shifts(analysis, runs).verdict == fd.INCONCLUSIVE  # one run: no spread
    analysis, runs = analysis_of({k: {} for k in lape}, {}, lape)
    analysis.lape["warnings"] = ["The lowest bin spans p up to 0.94."]  # not low-probability neurons
    assert c6_low_probability_shifts(analysis, runs).verdict == fd.INCONCLUSIVE


# --- C8: LAPE neurons kept by own-language calibration (structured runs), against the seed spread -----------


def _lape_survival(effect, spread: float, seeds=(0, 1), method="wanda_sp"):
    """Each run removes 25% of every language's LAPE neurons, less `effect` (a number, or one per language)
    of its own calibration language's; the seeds move every share by +-spread. Random channels: 20%."""
    lape = {}
    for lang, seed in itertools.product(LANGS, seeds):
        own = effect.get(lang, 0.0) if isinstance(effect, dict) else effect
        shift = spread * (1 if seed % 2 else -1)
        shares = {m: {"removed": 0.25 - (own if m == lang else 0) + shift, "layer_average": 0.2} for m in LANGS}
        lape[f"{lang}-s{seed}"] = {"overlap": {"down_proj": {"languages": shares}}}
    return analysis_of({k: {} for k in lape}, {}, lape, method=method)


def test_c8_own_calibration_keeping_its_neurons_beyond_the_seed_spread_is_supported():
    found = c8_lape_survival(*_lape_survival(effect=0.1, spread=0.01))
    assert found.verdict == fd.SUPPORTED
    en = found.details["languages"]["en"]
    assert en["effect"] == pytest.approx(0.1) and en["own"] == pytest.approx(0.15) and en["random"] == 0.2
    assert en["outcome"] == "holds" and en["df"] == 3  # two draws of three rows


def test_c8_an_effect_inside_the_seed_spread_is_inconclusive():
    # own calibration removes 0.5 points fewer while two calibration draws move the share by +-5 points
    found = c8_lape_survival(*_lape_survival(effect=0.005, spread=0.05))
    assert found.verdict == fd.INCONCLUSIVE and "80% power" in found.evidence
    assert c8_lape_survival(*_lape_survival(effect=0.1, spread=0.0, seeds=(0,))).verdict == fd.INCONCLUSIVE


def test_c8_own_calibration_removing_more_of_its_neurons_is_not_supported():
    assert c8_lape_survival(*_lape_survival(effect=-0.1, spread=0.01)).verdict == fd.NOT_SUPPORTED


def test_c8_one_language_worse_is_judged_with_the_family_bound():
    # four draws per row (df 9): pooled SD 0.01 * sqrt(4 / 3); one language's contrast against the
    # other two rows' mean has stderr SD * sqrt(1/4 + (1/4 + 1/4) / 4)
    seeds = (0, 1, 2, 3)
    se = 0.01 * math.sqrt(4 / 3) * math.sqrt(0.375)
    effects = {"en": 0.1, "sw": 0.1}
    # 2.5 stderrs worse: p 0.034 alone, but not below Holm's 0.05 / 3 for the smallest of three
    mild = c8_lape_survival(*_lape_survival({**effects, "de": -2.5 * se}, spread=0.01, seeds=seeds))
    assert mild.verdict == fd.INCONCLUSIVE and mild.details["languages"]["de"]["outcome"] == "undecided"
    assert mild.details["languages"]["de"]["p_fails"] < 0.05
    strong = c8_lape_survival(*_lape_survival({**effects, "de": -5.0 * se}, spread=0.01, seeds=seeds))
    assert strong.verdict == fd.NOT_SUPPORTED and strong.details["languages"]["de"]["outcome"] == "fails"


def test_c8_does_not_apply_to_methods_that_remove_no_channel():
    assert c8_lape_survival(*_lape_survival(0.1, 0.01, method="wanda")).verdict == fd.DOES_NOT_APPLY
    structured_runs = [run(lang, seed) for lang, seed in itertools.product(LANGS, (0, 1))]
    for r in structured_runs:
        r.summary.method = "wanda_sp"
    unstructured_runs = [run(lang, seed) for lang, seed in itertools.product(LANGS, (0, 1))]
    for runs, without, verdict in ((unstructured_runs, fd.DOES_NOT_APPLY, fd.DOES_NOT_APPLY),
                                   (structured_runs, fd.NO_DATA, fd.SUPPORTED)):  # fmt: skip
        setting = runs[0].setting
        comparison = Comparison(model="m", runs=runs, perplexity={setting: {}})
        assert _claim(fd.comparison_findings(comparison), setting, "C8").verdict == without  # no analysis
        analysis, _ = _lape_survival(0.1, 0.01)
        for entry in analysis.runs:
            entry["setting"] = setting
        assert _claim(fd.comparison_findings(comparison, analysis), setting, "C8").verdict == verdict


def test_analysed_runs_take_compare_setting_and_row_by_run_key():
    """An analysis.json whose setting or row labels differ from compare's (another labelling of structured
    settings, a calibration-free run labelled 'en') is read with compare's labels, run by run."""
    runs = [run(lang, seed) for lang, seed in itertools.product(LANGS, (0, 1))]
    for r in runs:
        r.summary.method = "wanda_sp"
    analysis, _ = _lape_survival(0.1, 0.01)
    keys = {f"{r.language}-s{r.config.data.seed}": r.path.name for r in runs}
    analysis.lape["runs"] = {keys[k]: v for k, v in analysis.lape["runs"].items()}
    for entry in analysis.runs:
        entry.update(key=keys[entry["key"]], setting="wanda_sp unstructured s=0.5 n=4x32", recipe="en")
    setting = runs[0].setting
    assert setting == "wanda_sp structured s=0.5 n=4x8"
    comparison = Comparison(model="m", runs=runs, perplexity={setting: {}})
    assert _claim(fd.comparison_findings(comparison, analysis), setting, "C8").verdict == fd.SUPPORTED


def _claim(findings, setting, claim):
    return next(f for f in findings[setting] if f.claim == claim)


# --- C3 under low power, in both directions (the rules: claims_downstream; more in test_c3_verdicts.py) ------------


def _downstream_runs(effect: float, n: int = 40, seeds=(0, 1)) -> list[Run]:
    """Three tasks; own language answers `effect` x n more (or fewer) items right than the others, in
    every calibration draw (the draws alike)."""
    extra = round(abs(effect) * n)
    runs = []
    for lang, seed in itertools.product(LANGS, seeds):
        pruned = {}
        for task_lang in LANGS:
            scores = [int(i % 2 == 0) for i in range(n)]  # half right
            if lang == task_lang:  # shift `extra` items: right ones wrong or wrong ones right
                flip = [i for i in range(n) if scores[i] == (0 if effect > 0 else 1)][:extra]
                scores = [1 - s if i in flip else s for i, s in enumerate(scores)]
            items = {"ids": list(range(n)), "acc": scores}
            pruned[f"lp_prune_proxy_{task_lang}"] = {"acc": statistics.fmean(scores), "items": items}
        runs.append(run(lang, seed, downstream={"pruned": pruned}))
    return runs


@pytest.mark.parametrize("effect, verdict", [(0.05, fd.INCONCLUSIVE), (0.5, fd.NOT_SUPPORTED)])
def test_c3_low_power_gain_is_inconclusive_and_a_large_gain_refutes(effect, verdict):
    """Two of 40 items in each of three cells: the mean over cells cannot tell a gain of 0.02 from none."""
    found = c3_downstream_gains(target_rows(_downstream_runs(effect)), task_language)
    assert found.verdict == verdict, found.evidence
    if verdict == fd.INCONCLUSIVE:
        assert "could confirm a margin of" in found.evidence and "detect" in found.evidence


def test_c3_a_loss_rules_improvement_out_only_with_repeats():
    found = c3_downstream_gains(target_rows(_downstream_runs(-0.2)), task_language)
    assert found.verdict == fd.SUPPORTED and "ruled out" in found.evidence
    single = c3_downstream_gains(target_rows(_downstream_runs(-0.2, seeds=(0,))), task_language)
    assert single.verdict == fd.INCONCLUSIVE and "no repeated draws of their own" in single.evidence


@pytest.mark.parametrize("n, verdict", [(20, fd.INCONCLUSIVE), (400, fd.SUPPORTED)])
def test_c3_unchanged_items_rule_out_a_gain_only_when_there_are_enough(n, verdict):
    """No item changes with the calibration language: the paired differences are all zero (sd 0), yet
    20 items cannot exclude a gain of 0.02 (one changed item is 0.05); 400 items can."""
    found = c3_downstream_gains(target_rows(_downstream_runs(0.0, n)), task_language)
    assert found.verdict == verdict, found.evidence
    assert all(cell["se"] == pytest.approx(1 / n) for cell in found.details["cells"].values())


def test_c3_leaves_out_probe_tasks_at_chance():
    task = "lp_prune_probe_capitals_en"
    dense = {task: {"acc": 0.26, "acc_stderr": 0.05}}
    runs = [
        run(lang, downstream={"pruned": {task: {"acc": 0.9 if lang == "en" else 0.3}}, "dense": dense})
        for lang in LANGS
    ]
    found = c3_downstream_gains(target_rows(runs), lambda t: "en")
    assert found.verdict == fd.NO_DATA and task in found.evidence


# --- C7: similar and outlier calibration languages ------------------------------------------------------------

SEVEN = ("ar", "de", "en", "es", "ru", "sw", "zh")


def _related(similar_gain: float) -> list[Run]:
    """de, en, es calibrations help each other by `similar_gain`; every run with two seeds."""
    runs = []
    for lang, seed in itertools.product(SEVEN, (0, 1)):
        values = {}
        for e in SEVEN:
            latin = {lang, e} <= {"de", "en", "es"}
            values[e] = 10.0 if e == lang else 12.0 * (1 - similar_gain if latin else 1.0)
            values[e] *= 1 + 0.005 * (1 if seed else -1)
        runs.append(run(lang, seed, values))
    return runs


def test_c7_consistent_similar_advantage_refutes_and_none_supports():
    found = c7_related_languages(_related(0.2))
    assert found.verdict == fd.NOT_SUPPORTED
    assert found.details["relations"]["similar"]["effect"] == pytest.approx(-math.log(0.8))
    found = c7_related_languages(_related(0.0))
    assert found.verdict == fd.SUPPORTED
    assert found.details["cells"]["de similar"]["calibrations"] == ["en", "es"]
    assert c7_related_languages([r for r in _related(0.0) if r.config.data.seed == 0]).verdict == fd.INCONCLUSIVE


# --- the shipped study grids have what every claim needs ------------------------------------------------


@pytest.mark.parametrize(
    ("sweep_file", "source", "recipes"),
    [("sweeps/study-grid-gpu.yaml", "mc4", 4), ("sweeps/study.yaml", "packaged", 2)],
)
def test_the_study_grids_give_every_claim_its_data(sweep_file, source, recipes, tmp_path, monkeypatch):
    from collections import defaultdict

    from jsonargparse import ArgumentParser

    from lp_prune.commands.run import add_arguments
    from lp_prune.config.io import run_config_from
    from lp_prune.config.tasks import expand_tasks
    from lp_prune.sweeps.expand import expand, load_sweep
    from lp_prune.sweeps.runner import plan, run_options

    monkeypatch.chdir(tmp_path)  # the sweep's configs/ paths are the packaged files, from any folder
    sweep = load_sweep(sweep_file)
    parser = ArgumentParser(exit_on_error=False)
    add_arguments(parser)  # `lp-prune run`'s own parser
    groups = defaultdict(list)
    for planned in plan(sweep, expand(sweep), tmp_path):
        namespace = parser.instantiate_classes(parser.parse_args(run_options(planned.argv, sweep)))
        config = run_config_from(namespace)
        config.validate()
        groups[(config.model.name, config.prune.method.name)].append(config)
    assert len(groups) == recipes  # models x methods
    for configs in groups.values():
        seeds = defaultdict(set)
        for config in configs:
            assert config.data.source == source  # counted as a calibration language (C1-C5)
            seeds[config.data.calibration_language].add(config.data.seed)
            tasks = expand_tasks(config.eval.tasks, config.data.eval_languages)
            assert {task_language(t) for t in tasks} >= set(SEVEN) - {None}  # C3: every language's tasks
            # C2, C5, C6 need `analyze`: saved weights or masks that rebuild the model
            assert config.save_model or not config.prune.method.updates_kept_weights
        assert set(seeds) == set(SEVEN) and all(len(s) >= 2 for s in seeds.values())  # floors: C1, C2, C4, C5


def test_compare_reads_acc_norm_for_arc_and_hellaswag_and_f1_for_mkqa():
    from lp_prune.analysis.compare.tables import accuracy_matrix, item_scores, read_metric

    assert [read_metric(t) for t in ("arc_de", "arc_challenge", "hellaswag_ru", "mkqa_en", "belebele_deu_Latn")] == [
        "acc_norm",
        "acc_norm",
        "acc_norm",
        "f1",
        "acc",
    ]
    assert read_metric("arc_de", {"acc": 0.3}) == "acc"  # a result without acc_norm falls back
    downstream = {
        "pruned": {
            "arc_de": {"acc": 0.30, "acc_norm": 0.35, "items": {"ids": [1, 2], "acc": [0, 1], "acc_norm": [1, 1]}},
            "mkqa_de": {
                "exact_match": 0.1,
                "f1": 0.25,
                "items": {"ids": [1, 2], "exact_match": [0, 0], "f1": [0.5, 0.0]},
            },
        }
    }
    runs = [run("de", downstream=downstream)]
    assert accuracy_matrix(runs)["de"] == {"arc_de": 0.35, "mkqa_de": 0.25}
    assert item_scores(runs)["de"] == {"arc_de": {1: 1, 2: 1}, "mkqa_de": {1: 0.5, 2: 0.0}}


def test_c2_within_the_seed_spread_is_inconclusive():
    snr = {}
    for lang, seed in itertools.product(LANGS, (0, 1)):  # own +0.05 dB while seeds move SNR by +-1 dB
        shift = 1.0 if seed else -1.0
        snr[f"{lang}-s{seed}"] = {e: [5.0, 20.0 + shift + (0.05 if e == lang else 0.0)] for e in LANGS}
    analysis, runs = analysis_of(snr, {})
    assert c2_highest_snr(analysis, runs).verdict == fd.INCONCLUSIVE
