"""The verdict engine tried as a statistician would: repeats are distinct draws, decisions are t-tests at
the noise's degrees of freedom, "any language" claims are Holm-controlled, "no difference" claims are
one-sided or two one-sided tests against a margin, diverged runs are named, and every claim's rate of
a false "supported" over simulated nulls stays at or below its nominal level."""

import itertools
import math
import random
import shutil

import pytest

from lp_prune.analysis.compare import findings as fd
from lp_prune.analysis.compare.claims_analysis import c2_highest_snr, c5_specific_only, c6_low_probability_shifts
from lp_prune.analysis.compare.claims_lape import c8_lape_survival
from lp_prune.analysis.compare.claims_perplexity import c1_lowest_perplexity, c7_related_languages, ratio_text
from lp_prune.analysis.compare.stats import Estimate, holm
from lp_prune.analysis.compare.verdicts import repeat_floor
from lp_prune.analysis.runs import load_runs
from lp_prune.analysis.study_report import cell_text, languages_held
from lp_prune.cli import main
from test_findings import SETTING, _plant_run
from test_verdicts import analysis_of, run

SEVEN = ("ar", "de", "en", "es", "ru", "sw", "zh")
PLANTS = 400
NOMINAL = 0.05


def _rate(outcomes: list[bool]) -> float:
    return sum(outcomes) / len(outcomes)


# --- the statistics themselves, against scipy's tables --------------------------------------------------


def test_estimates_use_student_t_at_their_degrees_of_freedom():
    e = Estimate(effect=2.2, se=1.0, df=7)
    assert e.p_two_sided() == pytest.approx(0.0638, abs=2e-4)  # t(7): 2.2 is not beyond 2.365
    assert e.direction() == "within noise"
    assert Estimate(2.2, 1.0, math.inf).direction() == "better"  # a normal Z would call it
    _, high = Estimate(0.0, 1.0, 1).interval()
    assert high == pytest.approx(12.706, abs=1e-3)  # t(1) 0.975 quantile
    assert not Estimate(1.0, 0.0, 5).judged  # an SD of 0 is no noise to judge against


def test_equivalence_is_two_one_sided_tests():
    margin = 0.02
    assert Estimate(0.001, 0.005, 20).equivalence(margin) == "equivalent"  # 90% CI inside +-0.02
    assert Estimate(0.05, 0.005, 20).equivalence(margin) == "different"  # beyond the margin
    assert Estimate(0.0, 0.02, 20).equivalence(margin) == "cannot tell"  # within noise is not "the same"
    assert Estimate(0.0, 0.02, 20).confirmable_margin() == pytest.approx(0.02 * 1.7247, rel=1e-3)


def test_holm_steps_down():
    assert holm([0.01, 0.04, 0.03]) == [True, False, False]
    assert holm([0.01, 0.02, 0.03]) == [True, True, True]


def test_a_floor_of_identical_repeats_is_no_floor():
    floor = repeat_floor([[2.0, 2.0], [3.0, 3.0]])
    assert floor.df == 2 and not floor.exists and "SD 0" in floor.text()


# --- the planted cases ---------------------------------------------------------------------------------------


def _plant(root, lang, seed, perplexity, extra=None):
    _plant_run(root / f"{lang}-s{seed}", lang, seed, perplexity, {}, prune_extra=extra)


def test_byte_identical_runs_are_one_draw_not_a_floor_of_zero(tmp_path, caplog):
    root = tmp_path / "runs"
    for lang in ("de", "en", "sw"):
        _plant(root, lang, 0, {e: 10.0 if e == lang else 10.03 for e in ("de", "en", "sw")})
        shutil.copytree(root / f"{lang}-s0", root / f"{lang}-copy")  # the same draw, twice
    runs = load_runs([root])
    assert len(runs) == 3 and "repeats the calibration draw" in caplog.text
    found = c1_lowest_perplexity(runs)
    assert found.verdict == fd.INCONCLUSIVE and "no repeats" in found.evidence


def test_runs_with_other_seeds_but_identical_masks_are_one_draw(tmp_path, caplog):
    root = tmp_path / "runs"
    _plant(root, "en", 0, {"en": 10.0})
    shutil.copytree(root / "en-s0", root / "en-s1")
    config = (root / "en-s1" / "config.yaml").read_text().replace("seed: 0\n  source", "seed: 1\n  source")
    (root / "en-s1" / "config.yaml").write_text(config)
    assert len(load_runs([root])) == 1 and "same setting, recipe and masks" in caplog.text


def test_languages_with_one_draw_never_borrow_a_mix_floor():
    # four languages, one draw each, no true effect; a mix with many draws gives a tight floor
    rng = random.Random(3)
    langs = ("de", "en", "es", "sw")
    runs = [run(lang, 0, {e: 10.0 * math.exp(rng.gauss(0, 0.01)) for e in langs}) for lang in langs]
    runs += [run("en+sw", s, {e: 10.0 * (1 + 0.0001 * s) for e in langs}) for s in range(5)]
    found = c1_lowest_perplexity(runs)
    assert found.verdict == fd.INCONCLUSIVE
    assert all("no repeats of its own" in " ".join(v["notes"]) for v in found.details["languages"].values())


@pytest.mark.parametrize(("draws", "verdict"), [(1, fd.INCONCLUSIVE), (2, fd.SUPPORTED), (3, fd.SUPPORTED)])
def test_c1_with_one_two_or_three_draws_per_language(draws, verdict):
    rng = random.Random(draws)
    runs = [
        run(lang, s, {e: (10.0 if e == lang else 12.0) * math.exp(rng.gauss(0, 0.01)) for e in SEVEN})
        for lang, s in itertools.product(SEVEN, range(draws))
    ]
    found = c1_lowest_perplexity(runs)
    assert found.verdict == verdict
    if draws > 1:
        assert "holds in 7 of 7" in found.evidence and f"df {7 * (draws - 1)}" in found.evidence


def test_c1_generally_names_its_exceptions():
    rng = random.Random(0)
    runs = []
    for lang, s in itertools.product(SEVEN, range(3)):
        values = {e: (10.0 if e == lang else 12.0) * math.exp(rng.gauss(0, 0.01)) for e in SEVEN}
        if lang == "ru":
            values["sw"] = 10.0 * math.exp(rng.gauss(0, 0.01))  # on sw, ru calibration is as good as sw's
        runs.append(run(lang, s, values))
    found = c1_lowest_perplexity(runs)
    assert found.verdict == fd.SUPPORTED
    assert "holds in 6 of 7" in found.evidence and "exceptions: sw (undecided" in found.evidence
    cell = {"verdict": found.verdict, "agreement": "agrees", **languages_held(found.to_dict())}
    assert cell_text(cell) == "supported (agrees; 6 of 7, exceptions: sw undecided)"


def test_ratio_labels_say_the_perplexity_ratio():
    # own 2.6 times the competitor's perplexity: +160%, not the log-ratio's "+95.5%"
    assert ratio_text(Estimate(-math.log(2.6), 0.01, 7)).startswith("+160.0%")
    assert ratio_text(Estimate(math.log(1 / 0.97), 0.01, 7)).startswith("-3.0%")


@pytest.mark.parametrize("bad", [math.nan, math.inf, None])
def test_a_diverged_run_is_the_worst_value_and_named(tmp_path, bad):
    root = tmp_path / "runs"
    langs = ("de", "en", "sw")
    for lang, seed in itertools.product(langs, (0, 1)):
        values = {e: (10.0 if e == lang else 12.0) * (1 + 0.001 * seed) for e in langs}
        if (lang, seed) == ("sw", 1):
            values["sw"] = bad
        _plant(root, lang, seed, values)
    assert main(["compare", str(root), "--out", str(tmp_path / "r"), "--no_wandb"]) == 0
    found = c1_lowest_perplexity(load_runs([root]))
    assert found.verdict == fd.SUPPORTED  # de and en hold: two of three
    sw = found.details["languages"]["sw"]
    assert sw["outcome"] == "fails" and "sw diverged (sw-s1)" in sw["notes"]
    assert "sw diverged (sw-s1)" in found.evidence
    report = (tmp_path / "r" / "report.md").read_text()
    assert "inf" in report


def test_a_sweep_over_owl_gives_two_settings_not_repeats(tmp_path):
    root = tmp_path / "runs"
    for lang, owl in itertools.product(("de", "en"), (False, True)):
        _plant_run(root / f"{lang}-owl{owl}", lang, 0, {"de": 10.0, "en": 10.0}, {}, prune_extra={"owl": owl})
    runs = load_runs([root])
    assert {run.setting for run in runs} == {f"{SETTING} owl=false", f"{SETTING} owl=true"}
    assert main(["compare", str(root), "--out", str(tmp_path / "r"), "--no_wandb"]) == 0


def test_c7_outliers_worse_is_no_advantage():
    # similar languages exactly as good as the neutral ones, outliers 30% worse: no advantage either way
    rng = random.Random(5)
    runs = []
    for lang, s in itertools.product(SEVEN, range(3)):
        values = {}
        for e in SEVEN:
            outlier = {lang, e} & {"ar", "zh", "sw"} and lang != e and not {lang, e} <= {"ar", "zh", "sw"}
            values[e] = (10.0 if e == lang else 12.0 * (1.3 if outlier else 1.0)) * math.exp(rng.gauss(0, 0.003))
        runs.append(run(lang, s, values))
    found = c7_related_languages(runs)
    assert found.verdict == fd.SUPPORTED, found.evidence


# --- C5: the agnostic part "similar" is an equivalence, not a non-significance --------------------------------


def _c5_plant(rng, agnostic_effect: float, noise: float, draws: int = 3, langs=("de", "en", "sw")):
    lsar = {}
    for lang, seed in itertools.product(langs, range(draws)):
        lsar[f"{lang}-s{seed}"] = {
            "languages": {
                e: {
                    "specific": [0.30 - (0.05 if e == lang else 0) + rng.gauss(0, noise)] * 2,
                    "agnostic": [0.50 - (agnostic_effect if e == lang else 0) + rng.gauss(0, noise)] * 2,
                }
                for e in langs
            }
        }
    return analysis_of({k: {} for k in lsar}, lsar)


@pytest.mark.parametrize("noise", [0.0005, 0.002])
def test_c5_exactly_true_is_never_not_supported_beyond_the_nominal_rate(noise):
    rng = random.Random(11)
    verdicts = [c5_specific_only(*_c5_plant(rng, 0.0, noise)).verdict for _ in range(PLANTS)]
    assert _rate([v == fd.NOT_SUPPORTED for v in verdicts]) <= NOMINAL
    if noise == 0.0005:  # precise enough to confirm the margin: mostly supported
        assert _rate([v == fd.SUPPORTED for v in verdicts]) > 0.8


@pytest.mark.parametrize("noise", [0.0005, 0.002, 0.005])
def test_c5_false_reads_supported_at_most_at_the_nominal_rate(noise):
    # the agnostic error is lower by exactly the margin under own-language calibration: not "similar"
    rng = random.Random(12)
    verdicts = [c5_specific_only(*_c5_plant(rng, 0.005, noise)).verdict for _ in range(PLANTS)]
    assert _rate([v == fd.SUPPORTED for v in verdicts]) <= NOMINAL


# --- simulated nulls: a false "supported" at most at the nominal rate ----------------------------------------


def _perplexity_runs(rng, advantage: dict[str, float], draws: int = 2, noise: float = 0.02):
    """Own-language calibration lowers the log perplexity on its language by `advantage[lang]`."""
    return [
        run(lang, s, {e: 10.0 * math.exp(-(advantage.get(lang, 0.0) if e == lang else 0.0) + rng.gauss(0, noise))
                      for e in SEVEN})
        for lang, s in itertools.product(SEVEN, range(draws))
    ]  # fmt: skip


def test_c1_null_three_of_seven_languages_hold():
    rng = random.Random(21)
    advantage = {"ar": 0.5, "de": 0.5, "en": 0.5}  # certain; the other four have none: not "generally"
    verdicts = [c1_lowest_perplexity(_perplexity_runs(rng, advantage)).verdict for _ in range(PLANTS)]
    assert _rate([v == fd.SUPPORTED for v in verdicts]) <= NOMINAL


def test_c2_null_no_language_holds():
    rng = random.Random(22)
    supported = []
    for _ in range(PLANTS // 2):
        snr = {
            f"{lang}-s{s}": {e: [20.0 + rng.gauss(0, 0.3), 21.0 + rng.gauss(0, 0.3)] for e in ("de", "en", "sw")}
            for lang, s in itertools.product(("de", "en", "sw"), range(2))
        }
        supported.append(c2_highest_snr(*analysis_of(snr, {})).verdict == fd.SUPPORTED)
    assert _rate(supported) <= NOMINAL


def test_c7_null_an_advantage_of_exactly_the_margin():
    rng = random.Random(23)
    advantage = -math.log(0.98)  # similar languages 2% lower perplexity: the margin itself
    verdicts = []
    for _ in range(PLANTS // 2):
        runs = []
        for lang, s in itertools.product(SEVEN, range(2)):
            values = {}
            for e in SEVEN:
                similar = {lang, e} <= {"de", "en", "es"} and lang != e
                values[e] = 10.0 * math.exp(-(advantage if similar else 0.0) + rng.gauss(0, 0.01))
            runs.append(run(lang, s, values))
        verdicts.append(c7_related_languages(runs).verdict)
    assert _rate([v == fd.SUPPORTED for v in verdicts]) <= NOMINAL


def test_c8_null_one_language_without_effect():
    from test_verdicts import _lape_survival

    rng = random.Random(24)
    supported = []
    for _ in range(PLANTS // 2):
        spread = rng.uniform(0.005, 0.02)
        effects = {"de": 0.1, "en": 0.1, "sw": 0.0}  # sw's own calibration removes as many as the others
        analysis, runs = _lape_survival(effects, spread=spread)
        for entry in analysis.lape["runs"].values():  # draw noise on every share
            for share in entry["overlap"]["down_proj"]["languages"].values():
                share["removed"] += rng.gauss(0, spread)
        supported.append(c8_lape_survival(analysis, runs).verdict == fd.SUPPORTED)
    assert _rate(supported) <= NOMINAL


def test_c6_null_no_excess_shift():
    rng = random.Random(25)
    supported = []
    for _ in range(PLANTS):
        lape = {
            f"r{i}": {"bins": [{"low": 0, "high": 0.1, "mean_abs_shift": 0.01 + rng.gauss(0, 0.002),
                                "all_neurons_mean_abs_shift": 0.01}]}
            for i in range(4)
        }  # fmt: skip
        supported.append(
            c6_low_probability_shifts(*analysis_of({k: {} for k in lape}, {}, lape)).verdict == fd.SUPPORTED
        )
    assert _rate(supported) <= NOMINAL


def test_a_claim_declared_once_reaches_compare_and_the_study_report(monkeypatch):
    from lp_prune.analysis.compare.findings import CLAIMS, Claim, SettingData, comparison_findings
    from lp_prune.analysis.compare.tables import Comparison
    from lp_prune.analysis.compare.verdicts import Finding
    from lp_prune.analysis.study_report import claims_table

    def judge(data: SettingData) -> Finding:
        return Finding("X1", fd.SUPPORTED, f"{len(data.runs)} runs")

    extra = Claim("X1", "A planted claim.", "Not in the study.", judge, standing="beyond the study")
    monkeypatch.setattr(fd, "CLAIMS", (*CLAIMS, extra))
    runs = [run(lang, s, {"de": 10.0, "en": 10.0}) for lang, s in itertools.product(("de", "en"), (0, 1))]
    setting = runs[0].setting
    found = comparison_findings(Comparison("m", runs, perplexity={setting: {}}))
    assert found[setting][-1].claim == "X1" and found[setting][-1].statement == "A planted claim."
    table = claims_table({setting: [f.to_dict() for f in found[setting]]}, [setting])
    assert table[-1]["claim"] == "X1" and table[-1]["tool"][setting] == {
        "verdict": "supported",
        "agreement": "beyond the study",
    }


def test_compare_refuses_a_run_whose_masks_belong_to_another_model(tmp_path, capsys):
    import json

    root = tmp_path / "runs"
    for lang in ("de", "en"):
        _plant(root, lang, 0, {"de": 10.0, "en": 10.0})
    for lang, numel in (("de", 32 * 32), ("en", 64 * 32)):  # en's summary names a model twice as wide
        path = root / f"{lang}-s0" / "summary.json"
        summary = json.loads(path.read_text())
        for record in summary["modules"]:
            record["numel"] = numel
        path.write_text(json.dumps(summary))
    assert main(["compare", str(root), "--out", str(tmp_path / "r"), "--no_wandb"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not belong to the model its summary.json records" in err


def test_the_study_report_gives_each_claims_detectable_effect_from_its_own_noise():
    from scipy import stats as sps

    from lp_prune.analysis.study_report import detectable_text

    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)  # at df inf, the two-sided test's 80%-power effect is z x se
    assert detectable_text({"pooled": {"se": 0.01, "df": math.inf}}) == f"{z * 0.01:.3g} pooled"
    per_language = {"languages": {"en": {"se": 0.02, "df": math.inf}, "sw": {"se": 0.04, "df": math.inf}}}
    assert detectable_text(per_language) == f"median {z * 0.03:.3g} over 2 ({z * 0.02:.3g}-{z * 0.04:.3g})"
    c5 = {"languages": {"en": {"specific": {"se": 0.02, "df": math.inf}, "agnostic": {"se": 9.0, "df": 1}}}}
    assert detectable_text(c5).startswith(f"median {z * 0.02:.3g} over 1")  # the specific part's noise
    # a mean over 5 runs: t with 4 df needs a larger effect than the normal's
    t = sps.t.ppf(0.975, 4) + sps.t.ppf(0.8, 4)
    assert detectable_text({"excess": [0.0] * 5, "mean": 0.0, "se": 0.01}) == f"{t * 0.01:.3g} over runs"
    assert detectable_text({"languages": {"en": {"se": float("nan"), "df": 0}}}) is None
