"""The offline knowledge-and-reasoning probe: parallel items in seven languages, their answers checked
against facts written here independently of lp_prune's tables, the task names and shorthands, and
the lm-eval tasks on a tiny model (per-item scores kept). CPU, offline, tiny models."""

import itertools
import json
import re
import unicodedata

import pytest

from lp_prune.cli import main
from lp_prune.config.tasks import (
    PROBE_FAMILIES,
    TASK_SHORTHANDS,
    check_task_name,
    expand_tasks,
    probe_family,
    probe_language,
    probe_task_name,
    proxy_language,
    task_language,
)
from lp_prune.errors import ConfigError
from lp_prune.evaluation import probe_facts
from lp_prune.evaluation.downstream import parse_output, plan_tasks, run_lm_eval, task_manager
from lp_prune.evaluation.probe import (
    N_CHOICES,
    at_chance,
    family_items,
    item_counts,
    join_options,
    probe_folder,
    tasks_at_chance,
    write_probe_tasks,
)
from lp_prune.languages import LANGUAGE_TABLE, LANGUAGES

# --- the facts, written here again: the answers are checked against these, not lp_prune's tables ------

CAPITAL = {
    "France": "Paris", "Germany": "Berlin", "Spain": "Madrid", "Italy": "Rome", "Portugal": "Lisbon",
    "Greece": "Athens", "Sweden": "Stockholm", "Norway": "Oslo", "Austria": "Vienna", "Finland": "Helsinki",
    "Ireland": "Dublin", "Russia": "Moscow", "Japan": "Tokyo", "China": "Beijing", "India": "New Delhi",
    "Indonesia": "Jakarta", "Iran": "Tehran", "Iraq": "Baghdad", "Saudi Arabia": "Riyadh", "South Korea": "Seoul",
    "Vietnam": "Hanoi", "Pakistan": "Islamabad", "Egypt": "Cairo", "Kenya": "Nairobi", "Nigeria": "Abuja",
    "Ghana": "Accra", "Ethiopia": "Addis Ababa", "Uganda": "Kampala", "Tanzania": "Dodoma", "Morocco": "Rabat",
    "Senegal": "Dakar", "Canada": "Ottawa", "Cuba": "Havana", "Brazil": "Brasília", "Argentina": "Buenos Aires",
    "Peru": "Lima", "Chile": "Santiago", "Colombia": "Bogotá", "Australia": "Canberra",
}  # fmt: skip
CONTINENT = {
    **dict.fromkeys(["France", "Germany", "Spain", "Italy", "Portugal", "Greece", "Sweden", "Norway"], "Europe"),
    **dict.fromkeys(["Austria", "Finland", "Ireland"], "Europe"),
    **dict.fromkeys(["Japan", "China", "India", "Indonesia", "Iran", "Iraq", "South Korea", "Vietnam"], "Asia"),
    "Pakistan": "Asia",
    **dict.fromkeys(["Egypt", "Kenya", "Nigeria", "Ghana", "Ethiopia", "Uganda", "Tanzania", "Morocco"], "Africa"),
    "Senegal": "Africa",
    **dict.fromkeys(["Canada", "Mexico", "Cuba"], "North America"),
    **dict.fromkeys(["Brazil", "Argentina", "Peru", "Chile", "Colombia"], "South America"),
}
WEEK = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
YEAR = ["January", "February", "March", "April", "May", "June", "July"]
YEAR += ["August", "September", "October", "November", "December"]
SIZE = ["ant", "mouse", "cat", "horse", "elephant", "whale"]  # smallest first
DURATION_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "year": 365 * 86400}
NUMBER_NAMES = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
WORD_NUMBERS = {word: n for n, word in enumerate(NUMBER_NAMES, 1)}
# The frame every question has in each language (question label, answer label).
FRAMES = {
    "ar": ("سؤال: ", "\nالجواب:"),
    "de": ("Frage: ", "\nAntwort:"),
    "en": ("Question: ", "\nAnswer:"),
    "es": ("Pregunta: ", "\nRespuesta:"),
    "ru": ("Вопрос: ", "\nОтвет:"),
    "sw": ("Swali: ", "\nJibu:"),
    "zh": ("问题：", "\n答案："),
}


def english_answer(family: str, question: str) -> str:
    """The right answer to an English probe question, worked out here."""
    q = question.removeprefix("Question: ").removesuffix("\nAnswer:")
    if family == "capitals":
        return CAPITAL[re.fullmatch(r"What is the capital of (.+)\?", q)[1]]
    if family == "continents":
        return CONTINENT[re.fullmatch(r"On which continent is (.+)\?", q)[1]]
    if family == "arithmetic":
        a, op, b = re.fullmatch(r"What is (\w+) (\+|-|×|plus|minus|times) (\w+)\?", q).groups()
        a, b = (int(x) if x.isdigit() else WORD_NUMBERS[x] for x in (a, b))
        return str({"+": a + b, "plus": a + b, "-": a - b, "minus": a - b}.get(op, a * b))
    if family == "ordering":
        if match := re.fullmatch(r"Today is (\w+)\. What day (is tomorrow|was yesterday)\?", q):
            step = 1 if match[2] == "is tomorrow" else -1
            return WEEK[(WEEK.index(match[1]) + step) % 7]
        match = re.fullmatch(r"It is (\w+) now\. Which month (comes next|came before it)\?", q)
        return YEAR[(YEAR.index(match[1]) + (1 if match[2] == "comes next" else -1)) % 12]
    if family == "comparison":
        match = re.fullmatch(r"Which (animal|period of time) is the (\w+): (\w+), (\w+), (\w+) or (\w+)\?", q)
        options = list(match.groups()[2:])
        key = SIZE.index if match[1] == "animal" else DURATION_S.__getitem__
        return (max if match[2] in ("largest", "longest") else min)(options, key=key)
    raise AssertionError(family)


# --- the items -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def items():
    return {(family, lang): family_items(family, lang) for family in PROBE_FAMILIES for lang in LANGUAGES}


def test_families_and_sizes(items):
    assert len(PROBE_FAMILIES) >= 4
    counts = item_counts()
    assert set(counts) == set(PROBE_FAMILIES)
    for family in PROBE_FAMILIES:
        assert 25 <= counts[family] <= 60, (family, counts[family])
        for lang in LANGUAGES:
            assert len(items[family, lang]) == counts[family]


@pytest.mark.parametrize("family", PROBE_FAMILIES)
def test_items_are_parallel_across_languages(items, family):
    english = items[family, "en"]
    assert len({item.id for item in english}) == len(english)  # ids are unique
    for lang in LANGUAGES:
        rendered = items[family, lang]
        assert [item.id for item in rendered] == [item.id for item in english]  # same ids, same order
        assert [item.label for item in rendered] == [item.label for item in english]
        for item in rendered:
            assert not any(code in item.id.split("-") for code in LANGUAGES)  # no language in an id
            assert len(item.choices) == N_CHOICES and 0 <= item.label < N_CHOICES
            assert len(set(item.choices)) == N_CHOICES  # the correct choice is there exactly once
            assert all(choice and choice == choice.strip() for choice in item.choices)
            head, tail = FRAMES[lang]
            assert item.question.startswith(head) and item.question.endswith(tail), item.question


@pytest.mark.parametrize("family", PROBE_FAMILIES)
def test_english_answers_are_right(items, family):
    for item in items[family, "en"]:
        assert item.choices[item.label] == english_answer(family, item.question), item


def _translations() -> dict[tuple[str, str], str]:
    """(language, text) -> English text, from every table of the probe (a text must mean one thing)."""
    tables = [
        *probe_facts.CAPITALS.values(),
        *probe_facts.CONTINENTS.values(),
        *probe_facts.DAYS,
        *probe_facts.MONTHS,
        *probe_facts.ANIMALS_BY_SIZE,
        *probe_facts.PERIODS_BY_LENGTH,
    ]
    out: dict[tuple[str, str], str] = {}
    for row in tables:
        for lang, text in row.items():
            assert out.setdefault((lang, text), row["en"]) == row["en"], (lang, text)
    return out


@pytest.mark.parametrize("family", PROBE_FAMILIES)
def test_every_language_has_the_same_choices_and_answer(items, family):
    """Choice k of an item is the same fact (the same number) in all seven languages; so is the answer."""
    translate = _translations()
    for lang in LANGUAGES:
        for item, english in zip(items[family, lang], items[family, "en"], strict=True):
            if family == "arithmetic":
                assert item.choices == english.choices and all(c.isdigit() for c in item.choices)
            else:
                assert [translate[lang, choice] for choice in item.choices] == english.choices, (lang, item)
            assert item.choices[item.label] == item.choices[english.label]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_items_are_written_in_the_language_script(items, lang):
    """Arabic in Arabic script, Russian in Cyrillic, Chinese in Han characters, the others in Latin."""
    script = LANGUAGE_TABLE[lang].script
    head, tail = FRAMES[lang]
    for family in PROBE_FAMILIES:
        for item in items[family, lang]:
            text = item.question.removeprefix(head).removesuffix(tail) + "".join(item.choices)
            letters = {c for c in text if c.isalpha()}
            assert letters, item
            assert {unicodedata.name(c).split()[0] for c in letters} == {script}, (item, letters)
    if lang == "zh":  # no spaces in Chinese but around a digit expression's operator
        for family in PROBE_FAMILIES:
            for item in items[family, lang]:
                assert " " not in re.sub(r" [-+×] ", "", item.question), item


def test_arithmetic_distractors_are_numbers_other_than_the_result(items):
    same_length = 0
    for item in items["arithmetic", "en"]:
        result = int(english_answer("arithmetic", item.question))
        wrong = [int(c) for i, c in enumerate(item.choices) if i != item.label]
        assert len(wrong) == N_CHOICES - 1 and result not in wrong and min(wrong) >= 0
        operands = re.findall(r"\b(\d+|" + "|".join(WORD_NUMBERS) + r")\b", item.question)
        operands = {int(x) if x.isdigit() else WORD_NUMBERS[x] for x in operands}
        assert len(operands) in (1, 2) and not operands & set(wrong), item  # no number copied from the prompt
        same_length += all(len(str(n)) == len(str(result)) for n in wrong)
    assert same_length >= 0.9 * len(items["arithmetic", "en"])  # length does not give the answer away
    forms = {item.id.split("-")[1] for item in items["arithmetic", "en"]}
    assert forms == {"digits", "words"}  # numbers both in digits and written out


def test_choice_order_is_seeded_and_facts_are_fixed():
    first, again, other = (
        family_items("capitals", "de"),
        family_items("capitals", "de"),
        family_items("capitals", "de", 7),
    )
    assert first == again
    assert [i.choices for i in first] != [i.choices for i in other] or [i.id for i in first] != [i.id for i in other]
    gold = {i.id: i.choices[i.label] for i in first}
    assert gold == {i.id: i.choices[i.label] for i in other}  # another order seed, the same facts


def test_join_options():
    assert join_options(["a", "b", "c", "d"], "en") == "a, b, c or d"
    assert join_options(["minuto", "semana", "año", "hora"], "es") == "minuto, semana, año u hora"
    assert join_options(["هرة", "فيل"], "ar") == "هرة أو فيل"
    assert join_options(["猫", "马", "鲸鱼"], "zh") == "猫、马和鲸鱼"


# --- task names and shorthands ---------------------------------------------------------------------------


def test_task_names_round_trip():
    for family, lang in itertools.product(PROBE_FAMILIES, LANGUAGES):
        name = probe_task_name(family, lang)
        assert name == f"lp_prune_probe_{family}_{lang}"
        assert (probe_family(name), probe_language(name), task_language(name)) == (family, lang, lang)
        assert proxy_language(name) is None
        check_task_name(name)
    for other in ("lp_prune_proxy_en", "lp_prune_probe_capitals", "lp_prune_probe_trivia_en", "belebele_eng_Latn"):
        assert probe_family(other) is None and probe_language(other) is None
    assert task_language("lp_prune_proxy_sw") == "sw" and task_language("arc_de") == "de"


@pytest.mark.parametrize(
    ("name", "message"),
    [("lp_prune_probe_capitals_fr", "unknown language 'fr'"), ("lp_prune_probe_trivia_en", "names no probe family")],
)
def test_bad_probe_names_are_config_errors(name, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_task_name(name)


def test_probe_shorthands_expand():
    assert {"probe", "probe_calibration"} <= set(TASK_SHORTHANDS)
    expanded = expand_tasks(["probe"], ["en", "sw"])
    assert expanded == [probe_task_name(f, lang) for f in PROBE_FAMILIES for lang in ("en", "sw")]  # by family
    assert len(expand_tasks(["probe"], LANGUAGES)) == len(PROBE_FAMILIES) * 7
    assert expand_tasks(["probe_calibration"], LANGUAGES, ["de"]) == [probe_task_name(f, "de") for f in PROBE_FAMILIES]
    assert expand_tasks(["probe_calibration"], LANGUAGES) == []
    assert expand_tasks(["probe_arithmetic", "lp_prune_probe_arithmetic_zh"], ["zh", "ar"]) == [
        "lp_prune_probe_arithmetic_zh",
        "lp_prune_probe_arithmetic_ar",
    ]


def test_at_chance():
    assert at_chance(0.25, 0.1) and at_chance(0.40, 0.08) and at_chance(0.10, 0.08)
    assert not at_chance(0.45, 0.08) and not at_chance(0.05, 0.08)
    assert at_chance(0.5, 0.1, n_choices=2) and not at_chance(0.5, 0.1, n_choices=4)
    assert at_chance(0.9, None)  # no stderr: nothing can be told apart
    results = {
        "lp_prune_probe_ordering_en": {"acc": 0.85, "acc_stderr": 0.08},
        "lp_prune_probe_arithmetic_en": {"acc": 0.30, "acc_stderr": 0.10},
        "lp_prune_proxy_en": {"acc": 0.25, "acc_stderr": 0.10},  # not a probe task
    }
    assert tasks_at_chance(results) == ["lp_prune_probe_arithmetic_en"]


# --- lm-eval ---------------------------------------------------------------------------------------------


def test_task_files_load_in_lm_eval(tmp_path):
    from lm_eval.tasks import TaskManager, get_task_dict

    pairs = list(itertools.product(PROBE_FAMILIES, LANGUAGES))
    folder = write_probe_tasks(folder=tmp_path / "a")
    assert write_probe_tasks(folder=tmp_path / "b") and probe_folder() != probe_folder(7)
    assert len(list(folder.iterdir())) == 2 * len(pairs)
    for path in folder.iterdir():  # the same files wherever they are written
        assert path.read_text().replace(str(folder), "") == (tmp_path / "b" / path.name).read_text().replace(
            str(tmp_path / "b"), ""
        )
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    names = [probe_task_name(f, lang) for f, lang in pairs]
    assert set(names) <= set(manager.task_index)
    tasks = get_task_dict(["lp_prune_probe_comparison_zh", "lp_prune_probe_capitals_ar"], manager)
    zh = list(tasks["lp_prune_probe_comparison_zh"].test_docs())
    assert [doc["id"] for doc in zh] == [item.id for item in family_items("comparison", "zh")]
    assert tasks["lp_prune_probe_comparison_zh"].config.target_delimiter == ""
    assert tasks["lp_prune_probe_capitals_ar"].config.target_delimiter == " "
    line = json.loads((folder / "lp_prune_probe_capitals_ar.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert line["question"] == family_items("capitals", "ar")[0].question  # written as text, not escaped


def test_probe_runs_through_lm_eval_and_keeps_item_scores(char_tokenizer, no_network):
    from tiny_models import tiny_model

    model = tiny_model("llama", vocab_size=len(char_tokenizer), attention="sdpa")
    model.config.max_position_embeddings = 1024
    plan = plan_tasks(["probe"], ["en", "zh"], 0.2)
    assert plan.local_only and not plan.needs_builtin
    assert len(task_manager(plan).task_index) >= len(plan.tasks)

    results = parse_output(run_lm_eval(model, char_tokenizer, plan, limit=4, batch_size=8))

    assert set(results) == {probe_task_name(f, lang) for f in PROBE_FAMILIES for lang in ("en", "zh")}
    for task, result in results.items():
        family, lang = probe_family(task), probe_language(task)
        assert result["language"] == lang and result["n"] == 4
        ids = [item.id for item in family_items(family, lang)[:4]]
        assert result["items"]["ids"] == ids  # the items' own ids, the first 4 of the file: the same in en and zh
        for metric in ("acc", "acc_norm"):
            per_item = result["items"][metric]
            assert len(per_item) == 4 and set(per_item) <= {0, 1}
            assert sum(per_item) / 4 == pytest.approx(result[metric])
            assert result[f"{metric}_stderr"] >= 0.0
    assert no_network == []


def test_run_keeps_probe_item_scores_in_summary(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.max_position_embeddings = 1024
    model.save_pretrained(tmp_path / "model")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "model")
    out = tmp_path / "run"
    args = ["run", "--model.name", str(tmp_path / "model"), "--out", str(out), "--wandb.mode", "disabled"]
    args += ["--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2", "--eval.perplexity", "false"]
    args += ["--data.eval_languages", "[en, sw]", "--eval.tasks", "[probe_ordering]", "--eval.limit", "3"]
    assert main(args) == 0
    downstream = json.loads((out / "summary.json").read_text())["downstream"]
    for stage in ("dense", "pruned"):
        assert set(downstream[stage]) == {"lp_prune_probe_ordering_en", "lp_prune_probe_ordering_sw"}
        en, sw = downstream[stage]["lp_prune_probe_ordering_en"], downstream[stage]["lp_prune_probe_ordering_sw"]
        assert en["items"]["ids"] == sw["items"]["ids"] == [i.id for i in family_items("ordering", "en")[:3]]
        assert len(en["items"]["acc"]) == 3 and en["language"] == "en"
