"""The CLDR probe: its items checked against babel's CLDR directly (names and facts), parallel in the
seven languages, distractors of the answer's category, deterministic; task names, shorthands and task
types; the tasks load in lm-eval offline and score on a tiny model. CPU, offline, tiny models."""

import itertools
import json
import re

import pytest
from babel import Locale
from babel.core import get_global
from babel.languages import get_official_languages

from lp_prune.analysis.compare.claims_downstream import not_above_chance
from lp_prune.analysis.compare.claims_task_type import task_type
from lp_prune.config.tasks import (
    CLDR_FAMILIES,
    TASK_SHORTHANDS,
    check_task_name,
    choice_probe_family,
    cldr_family,
    cldr_language,
    cldr_task_name,
    expand_tasks,
    is_local,
    probe_family,
    task_language,
)
from lp_prune.errors import ConfigError
from lp_prune.evaluation import m49
from lp_prune.evaluation.downstream import parse_output, plan_tasks, run_lm_eval, task_manager
from lp_prune.evaluation.probe import N_CHOICES, tasks_at_chance
from lp_prune.evaluation.probe_cldr import (
    SMALL_FAMILIES,
    cldr_folder,
    family_items,
    item_counts,
    write_cldr_tasks,
)
from lp_prune.languages import LANGUAGES

LOCALES = {lang: Locale.parse(lang) for lang in LANGUAGES}
FRAMES = {  # (question label, answer label) of each language's prompt
    "ar": ("سؤال: ", "\nالجواب:"),
    "de": ("Frage: ", "\nAntwort:"),
    "en": ("Question: ", "\nAnswer:"),
    "es": ("Pregunta: ", "\nRespuesta:"),
    "ru": ("Вопрос: ", "\nОтвет:"),
    "sw": ("Swali: ", "\nJibu:"),
    "zh": ("问题：", "\n答案："),
}
REGIONS = ("002", "019", "142", "150", "009")
# A few facts written here again, not read from lp_prune's tables.
KNOWN = {
    "continent": {"KE": "002", "BR": "019", "JP": "142", "FR": "150", "AU": "009", "CA": "019", "IN": "142"},
    "currency": {"JP": "JPY", "KE": "KES", "FR": "EUR", "BR": "BRL", "IN": "INR", "GB": "GBP"},
    "language": {"FR": "fr", "JP": "ja", "CL": "es", "DE": "de", "BR": "pt", "SA": "ar"},
}


@pytest.fixture(scope="module")
def items():
    return {(family, lang): family_items(family, lang) for family in CLDR_FAMILIES for lang in LANGUAGES}


def _code(item_id: str) -> str:
    return item_id.split("-")[-1]


def _tender(country: str) -> list[str]:
    return [c for c, _s, end, tender in get_global("territory_currencies").get(country, ()) if end is None and tender]


def _stand_alone(lang: str, kind: str) -> list[str]:
    """CLDR's stand-alone wide month (January first) or weekday (Monday first) names."""
    locale = LOCALES[lang]
    table = locale.months if kind == "month" else locale.days
    return [str(name) for _, name in sorted(table["stand-alone"]["wide"].items())]


def test_counts_per_family_and_language(items):
    counts = item_counts()
    print("\nCLDR probe items per family (the same in each of the seven languages):", counts)
    assert set(counts) == set(CLDR_FAMILIES)
    for family in CLDR_FAMILIES:
        for lang in LANGUAGES:
            assert len(items[family, lang]) == counts[family]
    assert counts["continent"] >= 170 and counts["currency"] >= 150 and counts["language"] >= 100
    assert counts["month"] == 24 and counts["weekday"] == 14 and {"month", "weekday"} == SMALL_FAMILIES


@pytest.mark.parametrize("family", CLDR_FAMILIES)
def test_items_are_parallel(items, family):
    english = items[family, "en"]
    assert len({item.id for item in english}) == len(english)
    for lang in LANGUAGES:
        rendered = items[family, lang]
        assert [item.id for item in rendered] == [item.id for item in english]
        assert [item.label for item in rendered] == [item.label for item in english]
        for item in rendered:
            assert not any(code in item.id.split("-") for code in LANGUAGES)
            assert len(item.choices) == N_CHOICES and 0 <= item.label < N_CHOICES
            assert len(set(item.choices)) == N_CHOICES, item  # distractors never equal the answer
            assert all(choice and choice == choice.strip() for choice in item.choices)
            head, tail = FRAMES[lang]
            assert item.question.startswith(head) and item.question.endswith(tail), item.question


@pytest.mark.parametrize("lang", LANGUAGES)
def test_country_items_match_cldr(items, lang):
    """The country in the question and every choice are babel's CLDR names; the answer is CLDR's fact."""
    locale = LOCALES[lang]
    region_names = {locale.territories[r] for r in REGIONS}
    currency_names = {name: code for code, name in locale.currencies.items()}
    language_names = {name: code for code, name in locale.languages.items()}
    for family in ("continent", "currency", "language"):
        for item in items[family, lang]:
            country = _code(item.id)
            assert locale.territories[country] in item.question, item
            answer = item.choices[item.label]
            if family == "continent":
                assert set(item.choices) <= region_names
                assert answer == locale.territories[m49.REGION_OF[country]]
                assert country not in m49.TRANSCONTINENTAL
            elif family == "currency":
                assert set(item.choices) <= set(currency_names), item
                assert _tender(country) == [currency_names[answer]]
                current = {c for c, _s, end, _t in get_global("territory_currencies")[country] if end is None}
                assert not {currency_names[c] for i, c in enumerate(item.choices) if i != item.label} & current
            else:
                assert set(item.choices) <= set(language_names), item
                official = {code.split("_")[0] for code in get_official_languages(country)}
                assert official == {language_names[answer].split("_")[0]}
                de_facto = {code.split("_")[0] for code in get_official_languages(country, de_facto=True)}
                wrong = {language_names[c] for i, c in enumerate(item.choices) if i != item.label}
                assert not wrong & de_facto, item
        gold = {_code(item.id): item.choices[item.label] for item in items[family, lang]}
        for country, code in KNOWN[family].items():
            table = {"continent": locale.territories, "currency": locale.currencies, "language": locale.languages}[
                family
            ]
            assert gold[country] == table[code], (family, country)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_calendar_items_match_cldr(items, lang):
    for family, size in (("month", 12), ("weekday", 7)):
        order = _stand_alone(lang, family)
        assert len(order) == size
        for item in items[family, lang]:
            _, direction, number = item.id.split("-")
            asked = int(number) - 1
            assert order[asked] in item.question and set(item.choices) <= set(order), item
            step = 1 if direction == "after" else -1
            assert item.choices[item.label] == order[(asked + step) % size], item
            assert order[asked] not in item.choices  # the month (day) asked about is no choice
    if lang == "ru":  # the nominative (stand-alone), not the genitive of dates
        assert "март" in _stand_alone("ru", "month") and "марта" not in _stand_alone("ru", "month")


def test_distractors_prefer_the_same_region(items):
    """Currency and language distractors come from countries of the answer's region where it has enough."""
    same = total = 0
    regional = {}
    for item in items["currency", "en"]:
        regional.setdefault(m49.REGION_OF[_code(item.id)], set()).add(item.choices[item.label])
    for item in items["currency", "en"]:
        wrong = [c for i, c in enumerate(item.choices) if i != item.label]
        same += sum(c in regional[m49.REGION_OF[_code(item.id)]] for c in wrong)
        total += len(wrong)
    assert same >= 0.9 * total


def test_m49_table():
    assert len(m49.REGION_OF) == 194 and set(m49.REGIONS) == set(REGIONS)
    assert set(m49.REGION_OF) >= m49.TRANSCONTINENTAL
    for country in m49.REGION_OF:
        assert all(country in LOCALES[lang].territories for lang in LANGUAGES), country
    for country, region in KNOWN["continent"].items():
        assert m49.REGION_OF[country] == region


def test_deterministic_given_the_seed():
    first, again, other = (
        family_items("currency", "sw"),
        family_items("currency", "sw"),
        family_items("currency", "sw", 7),
    )
    assert first == again
    assert [i.id for i in first] != [i.id for i in other]  # another seed, another order
    gold = {i.id: i.choices[i.label] for i in first}
    assert gold == {i.id: i.choices[i.label] for i in other}  # the same facts


# --- task names, shorthands, types ---------------------------------------------------------------------


def test_task_names_and_shorthands():
    for family, lang in itertools.product(CLDR_FAMILIES, LANGUAGES):
        name = cldr_task_name(family, lang)
        assert name == f"lp_prune_cldr_{family}_{lang}"
        assert (cldr_family(name), cldr_language(name), task_language(name)) == (family, lang, lang)
        assert probe_family(name) is None and choice_probe_family(name) == f"cldr_{family}" and is_local(name)
        assert task_type(name).endswith(family if family != "language" else "official language")
        check_task_name(name)
    assert {"cldr", "cldr_calibration", "cldr_currency"} <= set(TASK_SHORTHANDS)
    assert expand_tasks(["cldr"], ["en", "sw"]) == [cldr_task_name(f, g) for f in CLDR_FAMILIES for g in ("en", "sw")]
    assert expand_tasks(["cldr_calibration"], LANGUAGES, ["de"]) == [cldr_task_name(f, "de") for f in CLDR_FAMILIES]
    assert expand_tasks(["cldr_month"], ["zh", "fra_Latn"]) == ["lp_prune_cldr_month_zh"]
    assert len({task_type(cldr_task_name(f, "en")) for f in CLDR_FAMILIES}) == len(CLDR_FAMILIES)
    assert task_type("lp_prune_probe_continents_en") == "continents"  # the hand-written probe's own types


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lp_prune_cldr_currency_fr", "unknown language 'fr'"),
        ("lp_prune_cldr_capital_en", "names no CLDR probe family"),
    ],
)
def test_bad_cldr_names_are_config_errors(name, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_task_name(name)


def test_chance_screens_cldr_tasks():
    results = {
        "lp_prune_cldr_currency_en": {"acc": 0.9, "acc_stderr": 0.03},
        "lp_prune_cldr_month_sw": {"acc": 0.3, "acc_stderr": 0.09},
    }
    assert tasks_at_chance(results) == ["lp_prune_cldr_month_sw"]
    assert not_above_chance("lp_prune_cldr_month_sw", 0.3, 0.09)
    assert not not_above_chance("lp_prune_cldr_currency_en", 0.9, 0.03)


# --- lm-eval -------------------------------------------------------------------------------------------


def test_task_files_load_in_lm_eval(tmp_path):
    from lm_eval.tasks import TaskManager, get_task_dict

    folder = write_cldr_tasks(folder=tmp_path / "a")
    assert len(list(folder.iterdir())) == 2 * len(CLDR_FAMILIES) * len(LANGUAGES)
    assert cldr_folder() != cldr_folder(7) and "babel" in cldr_folder().name
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    names = {cldr_task_name(f, lang) for f, lang in itertools.product(CLDR_FAMILIES, LANGUAGES)}
    assert names <= set(manager.task_index)
    tasks = get_task_dict(["lp_prune_cldr_language_zh", "lp_prune_cldr_continent_ar"], manager)
    zh = list(tasks["lp_prune_cldr_language_zh"].test_docs())
    assert [doc["id"] for doc in zh] == [item.id for item in family_items("language", "zh")]
    assert tasks["lp_prune_cldr_language_zh"].config.target_delimiter == ""
    assert tasks["lp_prune_cldr_continent_ar"].config.target_delimiter == " "
    yaml = (folder / "lp_prune_cldr_continent_ar.yaml").read_text(encoding="utf-8")
    assert "Unicode CLDR" in yaml and "M49" in yaml and "question template" in yaml
    line = json.loads((folder / "lp_prune_cldr_continent_ar.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert line["question"] == family_items("continent", "ar")[0].question


def test_cldr_runs_through_lm_eval(char_tokenizer, no_network):
    from tiny_models import tiny_model

    model = tiny_model("llama", vocab_size=len(char_tokenizer), attention="sdpa")
    model.config.max_position_embeddings = 1024
    plan = plan_tasks(["cldr"], ["en", "ru"], 0.2)
    assert plan.local_only and not plan.needs_builtin
    assert len(task_manager(plan).task_index) >= len(plan.tasks)

    results = parse_output(run_lm_eval(model, char_tokenizer, plan, limit=3, batch_size=8))

    assert set(results) == {cldr_task_name(f, lang) for f in CLDR_FAMILIES for lang in ("en", "ru")}
    for task, result in results.items():
        assert result["language"] == cldr_language(task) and result["n"] == 3
        assert result["items"]["ids"] == [item.id for item in family_items(cldr_family(task), "en")[:3]]
        assert 0.0 <= result["acc"] <= 1.0 and result["acc_stderr"] >= 0.0
