"""Calibration mixes: proportions of data.nsamples rounded by largest remainder, and the typed recipe."""

import pytest

from lp_prune.config import (
    CalibrationRecipe,
    ConfigError,
    DataConfig,
    PruneConfig,
    RunConfig,
    calibration_mix,
    label_languages,
    proportional_counts,
)
from lp_prune.data import PruningDataModule


def test_proportions_become_largest_remainder_counts():
    # 32 x (0.4, 0.2, 0.4) = 12.8, 6.4, 12.8 -> floors 12, 6, 12 (30); the 2 left go to the largest
    # remainders, .8 (en) and .8 (sw), before .4 (zh).
    assert calibration_mix("en:0.4,zh:0.2,sw:0.4", 32) == {"en": 13, "zh": 6, "sw": 13}
    # 10 x (0.25, 0.25, 0.5) = 2.5, 2.5, 5 -> 2, 2, 5 and one left: a tie of remainders goes to the first.
    assert calibration_mix("de:0.25,ru:0.25,ar:0.5", 10) == {"de": 3, "ru": 2, "ar": 5}
    # Exact quotas need no rounding; the spec's order is kept.
    assert list(calibration_mix("zh:0.75,en:0.25", 8).items()) == [("zh", 6), ("en", 2)]


def test_every_named_language_gets_at_least_one_window():
    # 10 x (0.97, 0.02, 0.01) = 9.7, 0.2, 0.1 -> 9, 0, 0, +1 for en (largest remainder) = 10, 0, 0;
    # sw and zh then take one window each from en, the only language with two or more.
    assert calibration_mix("en:0.97,sw:0.02,zh:0.01", 10) == {"en": 8, "sw": 1, "zh": 1}
    # The donor is the language furthest above its quota: 5 x (0.48, 0.48, 0.04) = 2.4, 2.4, 0.2
    # -> 2, 2, 0 +1 for de (tie, first) = 3, 2, 0; de exceeds its quota by 0.6, ru falls short: de gives.
    assert proportional_counts({"de": 0.48, "ru": 0.48, "ar": 0.04}, 5) == {"de": 2, "ru": 2, "ar": 1}


@pytest.mark.parametrize("nsamples", [7, 16, 31, 128])
def test_counts_always_sum_to_nsamples(nsamples):
    spec = "ar:0.05,de:0.1,en:0.4,es:0.15,ru:0.1,sw:0.05,zh:0.15"
    counts = calibration_mix(spec, nsamples)
    assert sum(counts.values()) == nsamples and min(counts.values()) >= 1
    assert DataConfig(calibration_language=spec, nsamples=nsamples).calibration_samples == nsamples


def test_proportions_must_sum_to_one():
    calibration_mix("en:0.3333333,sw:0.6666667", 9)  # within 1e-6 of 1: accepted
    with pytest.raises(ConfigError, match=r"proportions sum to 0\.9, not 1"):
        calibration_mix("en:0.5,sw:0.4", 32)
    with pytest.raises(ConfigError, match="not 1"):
        calibration_mix("en:0.5,sw:0.500002", 32)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("en:0.5,sw:16", "mixes counts and proportions"),
        ("en:0.0,sw:1.0", "'en:0.0' needs a positive count (en:64) or a proportion in (0, 1]"),
        ("en:1.5", "'en:1.5' needs a positive count"),
        ("en:-0.5,sw:1.5", "'en:-0.5' needs a positive count"),
        ("en:0.5,en:0.5", "names 'en' twice"),
        ("xx:0.5,en:0.5", "unknown language 'xx'"),
        ("en:0.2,sw:0.2,zh:0.2,de:0.2,es:0.2", "data.nsamples 4 is fewer than the 5 languages"),
    ],
)
def test_bad_proportions_get_one_line(spec, message):
    with pytest.raises(ConfigError, match=None) as err:
        calibration_mix(spec, 4)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_counts_keep_working_beside_proportions():
    assert calibration_mix("en:64, sw:16", 32) == {"en": 64, "sw": 16}
    assert calibration_mix("en:1", 32) == {"en": 1}  # a count: no decimal point
    assert calibration_mix("en:1.0", 32) == {"en": 32}  # a proportion: all of nsamples


def test_datamodule_draws_the_proportional_counts(char_tokenizer):
    config = DataConfig(calibration_language="sw:0.25,en:0.75", nsamples=4, seqlen=16, eval_windows=0)
    data = PruningDataModule(config, char_tokenizer)
    data.setup()
    assert data.calibration_languages == ["sw", "en", "en", "en"]
    assert data.calibration.ids.shape == (4, 16)


def test_recipe_answers_what_the_call_sites_ask():
    recipe = CalibrationRecipe.parse("en:3,sw:2", 32, source="generated", statistics="balanced")
    assert recipe.spec == "en:3,sw:2" and recipe.languages == ("en", "sw") and recipe.is_mix
    assert recipe.counts == {"en": 3, "sw": 2} and recipe.total == 5  # explicit counts beat nsamples
    assert recipe.window_languages() == ["en", "en", "en", "sw", "sw"]
    assert recipe.includes("sw") and not recipe.includes("zh")
    assert recipe.label == "en:3,sw:2 generated balanced" and recipe.path_part == "en_3_sw_2"
    single = CalibrationRecipe.parse("de", 8)
    assert single.label == "de" and not single.is_mix and single.window_languages() == ["de"] * 8
    assert CalibrationRecipe.parse("all", 14).counts == dict.fromkeys(("ar", "de", "en", "es", "ru", "sw", "zh"), 2)
    with pytest.raises(ConfigError, match="unknown language 'xx'"):
        CalibrationRecipe.parse("en+xx", 8)


def test_recipe_of_a_run_config_carries_the_statistics_rule():
    config = RunConfig(
        data=DataConfig(calibration_language="en+sw", nsamples=6, source="files", files={"en": "a", "sw": "b"}),
        prune=PruneConfig(statistics="weighted", language_weights={"en": 1.0}),
    )
    recipe = config.recipe()
    assert (recipe.source, recipe.statistics, recipe.weights) == ("files", "weighted", (("en", 1.0),))
    assert recipe.missing_weights() == ["sw"] and recipe.label == "en+sw files weighted"
    assert config.data.recipe().statistics == "pooled" and config.data.recipe().counts == {"en": 3, "sw": 3}
    assert config.data.calibration_counts() == recipe.counts and config.data.calibration_samples == 6
    with pytest.raises(ConfigError, match="language_weights has no weight for calibration language sw"):
        config.validate()


def test_label_languages_reads_a_table_row_back():
    assert label_languages("all balanced") == ("ar", "de", "en", "es", "ru", "sw", "zh")
    assert label_languages("sw generated") == ("sw",)
    assert label_languages("en:24,sw:8") == ("en", "sw")
    assert label_languages("dense") == ()
