"""Offline knowledge-and-reasoning probe: the same templated multiple-choice items in all seven languages.

A SMALL TEMPLATED PROBE, NOT A BENCHMARK. The offline proxy (proxy_tasks.py: which sentence comes
next in held-out text) measures what perplexity measures; this probe asks for facts and simple
reasoning that do not depend on the language they are asked in, so that a calibration language's
perplexity gain can be checked against what the model knows and works out. Every item is written
once and rendered from the templates and fact tables of probe_facts.py:

    capitals    "What is the capital of Kenya?"                        Nairobi / Kampala / Accra / Dakar
    continents  "On which continent is Peru?"                          South America / Asia / ...
    arithmetic  "What is 23 + 14?", "What is three times four?"        the result and three near numbers
    ordering    "Today is Friday. What day is tomorrow?", months alike  a day (month) and three others
    comparison  "Which animal is the largest: ant, cat, horse or whale?", periods of time alike

Parallel items: item k of family f is the same fact in every language, under the same id (no
language in it), with its choices in the same seeded order (the label is the same index everywhere)
and at the same position of the task file (items are written in a seeded order, so eval.limit N
takes the same random N facts in every language). A prompt is "Question: <q>\nAnswer:" in the
language; each choice is scored by its log-likelihood after it (lm-eval multiple_choice, acc and
byte-normalised acc_norm), exactly as the proxy tasks are.

HAND-TRANSLATED: every name and phrasing here was translated by the project. Where the Unicode CLDR
has human-translated names (countries, continents, months, weekdays) the larger CLDR probe
(probe_cldr.py, tasks lp_prune_cldr_<family>_<lang>) asks the same kinds of question from them;
arithmetic and comparison have no CLDR source and exist only here.

What it is not: the items are few (37-60 per family and language), short and written from
templates by the project, not by native speakers of every language, and not checked against a
published benchmark; four choices make chance 0.25, and at n items a language's stderr is about
sqrt(p(1 - p) / n) (0.10 at 20 items). `at_chance` says when an accuracy cannot be told apart from
guessing: a family where the dense model is at chance cannot show a pruning loss.

The items are written at run time as JSON lines plus one lm-eval task YAML per family and language
into `cache_dir() / "probe_tasks" / <version and seed>`; nothing generated is committed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lp_prune.config.tasks import PROBE_FAMILIES, choice_probe_family, probe_task_name
from lp_prune.errors import ConfigError
from lp_prune.evaluation import probe_facts as facts
from lp_prune.evaluation.local_tasks import multiple_choice_yaml, write_task_files
from lp_prune.languages import LANGUAGES
from lp_prune.storage.cache_lock import cache_dir

PROBE_TAG = "lp_prune_probe"
PROBE_VERSION = 1  # bump when items change: the cache folder name includes it
DEFAULT_SEED = 1234
N_CHOICES = 4
CHANCE = 1 / N_CHOICES


@dataclass(frozen=True)
class ProbeItem:
    id: str  # the same in every language
    question: str  # the whole prompt, up to the answer label
    choices: list[str]
    label: int  # index of the correct choice; the same in every language


@dataclass(frozen=True)
class _Spec:
    """One item in every language at once: {language: text} for the question and each choice."""

    id: str
    question: facts.Term
    choices: list[facts.Term]
    label: int


# --- building ----------------------------------------------------------------------------------------


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(map(str, (PROBE_TAG, *parts))))  # str seeds: stable across platforms


def _choose(item_id: str, gold: Any, others: Sequence[Any], seed: int) -> tuple[list[Any], int]:
    """The gold answer and N_CHOICES - 1 of `others` in a seeded order; (choices, index of gold)."""
    rng = _rng(item_id, seed)
    picked = [gold, *rng.sample(list(others), N_CHOICES - 1)]
    rng.shuffle(picked)
    return picked, picked.index(gold)


def _each(render: Callable[[str], str]) -> facts.Term:
    return {lang: render(lang) for lang in LANGUAGES}


def join_options(options: Sequence[str], lang: str) -> str:
    """'a, b, c or d' in the language (Arabic: a أو b أو c أو d; Chinese: a、b、c和d)."""
    last = facts.OR[lang]
    if lang == "es" and options[-1].lower().startswith(("o", "ho")):
        last = "u"  # Spanish writes "u" before the sound o: "minuto u hora"
    if lang == "ar":
        return f" {last} ".join(options)
    if lang == "zh":
        return "、".join(options[:-1]) + last + options[-1]
    return ", ".join(options[:-1]) + f" {last} " + options[-1]


def _capitals(seed: int) -> list[_Spec]:
    specs = []
    for key in facts.CAPITALS:
        # Distractors: capitals of the same continent where it has enough (not an easy odd one out).
        same = [k for k in facts.CAPITALS if k != key and facts.CONTINENT_OF[k] == facts.CONTINENT_OF[key]]
        pool = same if len(same) >= N_CHOICES - 1 else [k for k in facts.CAPITALS if k != key]
        choices, label = _choose(f"capitals-{key}", key, sorted(pool), seed)

        def question(lang: str, key: str = key) -> str:
            country = facts.RU_GENITIVE[key] if lang == "ru" else facts.COUNTRIES[key][lang]
            return facts.QUESTIONS["capital"][lang].format(country=country)

        specs.append(_Spec(f"capitals-{key}", _each(question), [facts.CAPITALS[k] for k in choices], label))
    return specs


def _continents(seed: int) -> list[_Spec]:
    specs = []
    template = facts.QUESTIONS["continent"]
    for key, continent in facts.CONTINENT_OF.items():
        if key in facts.NO_CONTINENT_ITEM:
            continue
        others = [c for c in facts.CONTINENTS if c != continent]
        choices, label = _choose(f"continents-{key}", continent, others, seed)
        question = _each(lambda lang, key=key: template[lang].format(country=facts.COUNTRIES[key][lang]))
        specs.append(_Spec(f"continents-{key}", question, [facts.CONTINENTS[c] for c in choices], label))
    return specs


_OPERATIONS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}
_OPERATION_NAMES = {"+": "add", "-": "sub", "*": "mul"}


def arithmetic_problems() -> list[tuple[str, str, int, int]]:
    """(form, operation, a, b): 10 each of +, -, * in digits, 4 each with the numbers written out.

    Digits: sums of 2..49, differences of 11..60 and a smaller number, products of 2..12.
    Words: numbers 1..10 (the tables write out no more). Fixed by a constant seed: the facts
    themselves never change with the order seed.
    """
    rng = _rng("arithmetic-problems")
    ranges: dict[tuple[str, str], Callable[[], tuple[int, int]]] = {
        ("digits", "+"): lambda: (rng.randint(2, 49), rng.randint(2, 49)),
        ("digits", "-"): lambda: (a := rng.randint(11, 60), rng.randint(2, a - 1)),
        ("digits", "*"): lambda: (rng.randint(2, 12), rng.randint(2, 12)),
        ("words", "+"): lambda: (rng.randint(1, 10), rng.randint(1, 10)),
        ("words", "-"): lambda: (a := rng.randint(2, 10), rng.randint(1, a - 1)),
        ("words", "*"): lambda: (rng.randint(2, 10), rng.randint(2, 10)),
    }
    problems: list[tuple[str, str, int, int]] = []
    for (form, op), draw in ranges.items():
        wanted, seen = (10 if form == "digits" else 4), set()
        while len(seen) < wanted:
            a, b = draw()
            if (a, b) not in seen:
                seen.add((a, b))
                problems.append((form, op, a, b))
    return problems


def _expression(form: str, op: str, a: int, b: int, lang: str) -> str:
    if form == "digits":
        return f"{a} {facts.OPERATION_SYMBOLS[op]} {b}"
    words = (facts.NUMBER_WORDS[a][lang], facts.OPERATION_WORDS[op][lang], facts.NUMBER_WORDS[b][lang])
    return "".join(words) if lang == "zh" else " ".join(words)


def _wrong_results(op: str, a: int, b: int) -> list[int]:
    """Numbers near the result, and the result of another operation where it is not far off by its size.

    Never an operand (a model copies numbers from the prompt: 35 + 10 must not offer 35 or 10) and,
    where there are enough, of as many digits as the result (a log-likelihood prefers fewer tokens).
    """
    result = _OPERATIONS[op](a, b)
    near = {result + d for d in (-10, -3, -2, -1, 1, 2, 3, 10)}
    near |= {x for other in _OPERATIONS if other != op if (x := _OPERATIONS[other](a, b)) <= max(20, 2 * result)}
    near = {n for n in near if n >= 0} - {result, a, b}
    same = sorted(n for n in near if len(str(n)) == len(str(result)))
    if len(same) >= N_CHOICES - 1:
        return same
    return sorted(near, key=lambda n: (abs(len(str(n)) - len(str(result))), abs(n - result), n))[: N_CHOICES - 1]


def _arithmetic(seed: int) -> list[_Spec]:
    specs = []
    for form, op, a, b in arithmetic_problems():
        result = _OPERATIONS[op](a, b)
        item_id = f"arithmetic-{form}-{_OPERATION_NAMES[op]}-{a}-{b}"
        choices, label = _choose(item_id, result, _wrong_results(op, a, b), seed)

        def question(lang: str, form: str = form, op: str = op, a: int = a, b: int = b) -> str:
            text = facts.QUESTIONS["arithmetic"][lang].format(expr=_expression(form, op, a, b, lang))
            return text[0].upper() + text[1:]  # Swahili starts with the expression

        specs.append(_Spec(item_id, _each(question), [_each(lambda _, n=n: str(n)) for n in choices], label))
    return specs


def _ordering(seed: int) -> list[_Spec]:
    specs = []
    for kind, names, keys in (
        ("day", facts.DAYS, facts.DAY_KEYS),
        ("month", facts.MONTHS, [str(m) for m in range(1, 13)]),
    ):
        for i, key in enumerate(keys):
            for direction, step in (("after", 1), ("before", -1)):
                item_id = f"ordering-{kind}-{direction}-{key}"
                gold = (i + step) % len(names)
                others = [j for j in range(len(names)) if j not in (i, gold)]
                choices, label = _choose(item_id, gold, others, seed)
                template = facts.QUESTIONS[f"{kind}_{direction}"]
                asked = names[i]
                question = _each(lambda lang, t=template, kind=kind, asked=asked: t[lang].format(**{kind: asked[lang]}))
                specs.append(_Spec(item_id, question, [names[j] for j in choices], label))
    return specs


def _comparison(seed: int) -> list[_Spec]:
    specs = []
    for scale, names, (most, least) in (
        ("animal", facts.ANIMALS_BY_SIZE, ("largest", "smallest")),
        ("period", facts.PERIODS_BY_LENGTH, ("longest", "shortest")),
    ):
        for subset in itertools.combinations(range(len(names)), N_CHOICES):  # indices, smallest first
            for word, gold in ((most, subset[-1]), (least, subset[0])):
                item_id = f"comparison-{scale}-{word}-{''.join(map(str, subset))}"
                choices, label = _choose(item_id, gold, [j for j in subset if j != gold], seed)
                template = facts.QUESTIONS[f"{scale}_{word}"]

                def question(lang: str, t: facts.Term = template, c: list[int] = choices, n=names) -> str:
                    return t[lang].format(options=join_options([n[j][lang] for j in c], lang))

                specs.append(_Spec(item_id, _each(question), [names[j] for j in choices], label))
    return specs


_BUILDERS: dict[str, Callable[[int], list[_Spec]]] = {
    "capitals": _capitals,
    "continents": _continents,
    "arithmetic": _arithmetic,
    "ordering": _ordering,
    "comparison": _comparison,
}
assert tuple(_BUILDERS) == PROBE_FAMILIES, "lp_prune.config.tasks.PROBE_FAMILIES names the probe's families"


def _specs(family: str, seed: int) -> list[_Spec]:
    if family not in _BUILDERS:
        raise ConfigError(f"unknown probe family '{family}'; valid: {', '.join(PROBE_FAMILIES)}")
    specs = _BUILDERS[family](seed)
    _rng(family, "order", seed).shuffle(specs)  # a seeded order: eval.limit N takes a random N facts
    return specs


def family_items(family: str, lang: str, seed: int = DEFAULT_SEED) -> list[ProbeItem]:
    """The items of one family in one language, in the task file's (seeded) order."""
    return rendered(_specs(family, seed), lang, "probe")


def rendered(specs: Sequence[Any], lang: str, probe: str) -> list[ProbeItem]:
    """Parallel item specs (id, question and choices per language, label) as `lang`'s items in the
    probe's prompt frame."""
    if lang not in LANGUAGES:
        raise ConfigError(f"unknown {probe} language '{lang}'; valid: {', '.join(LANGUAGES)}")
    frame = facts.FRAMES[lang]
    return [
        ProbeItem(spec.id, frame.format(question=spec.question[lang]), [c[lang] for c in spec.choices], spec.label)
        for spec in specs
    ]


def item_counts(seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Items per family (the same in every language)."""
    return {family: len(_specs(family, seed)) for family in PROBE_FAMILIES}


# --- lm-eval task files --------------------------------------------------------------------------------


def probe_folder(seed: int = DEFAULT_SEED) -> Path:
    return cache_dir() / "probe_tasks" / f"v{PROBE_VERSION}-s{seed}"


def write_probe_tasks(seed: int = DEFAULT_SEED, folder: Path | None = None) -> Path:
    """Write `<task>.jsonl` and `<task>.yaml` for every family and language; return the folder (an include path).

    Always all of them (35 small files, milliseconds): lm-eval's index of a folder is built once per
    process (downstream._task_manager), so a folder that later gained tasks would hide them.
    """
    folder = folder or probe_folder(seed)
    tasks = (
        (
            probe_task_name(family, lang),
            [asdict(item) for item in family_items(family, lang, seed)],
            task_yaml(probe_task_name(family, lang), family, lang, folder / f"{probe_task_name(family, lang)}.jsonl"),
        )
        for family, lang in itertools.product(PROBE_FAMILIES, LANGUAGES)
    )
    return write_task_files(folder, tasks, "probe tasks")


def task_yaml(name: str, family: str, lang: str, data_file: Path) -> str:
    """The lm-eval task: log-likelihood of each choice after the prompt; acc and byte-normalised acc."""
    header = "Generated by lp_prune.evaluation.probe: a small templated PROBE, not a published benchmark."
    metadata = {"version": f"{PROBE_VERSION}.0", "language": lang, "family": family}
    return multiple_choice_yaml(name, PROBE_TAG, data_file, "question", lang, header, metadata)


# --- reading results -----------------------------------------------------------------------------------


def at_chance(acc: float, stderr: float | None, n_choices: int = N_CHOICES, z: float = 2.0) -> bool:
    """Whether an accuracy cannot be told apart from guessing among `n_choices`: |acc - 1/n| <= z * stderr.

    A task where the dense model is at chance cannot show what pruning costs: flag it rather than
    read a difference into it. Without a stderr (None) nothing can be told apart: True.
    """
    if n_choices < 2:
        raise ValueError(f"n_choices must be at least 2, not {n_choices}")
    if stderr is None:
        return True
    return abs(acc - 1 / n_choices) <= z * stderr


def tasks_at_chance(results: Mapping[str, Mapping[str, Any]], metric: str = "acc", z: float = 2.0) -> list[str]:
    """The probe and CLDR probe tasks of one stage's results ({task: {acc, acc_stderr, ...}}) whose
    `metric` is at chance (both have N_CHOICES choices)."""
    return [
        task
        for task, result in results.items()
        if choice_probe_family(task) and isinstance(result.get(metric), int | float)
        if at_chance(result[metric], result.get(f"{metric}_stderr"), N_CHOICES, z)
    ]
