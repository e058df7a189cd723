"""Offline CLDR probe: parallel multiple-choice items in all seven languages from human-translated names.

The names are the Unicode CLDR's (shipped by `babel`): CLDR's names of countries, world regions,
currencies, languages, months and weekdays are contributed and vetted by speakers of each language
(CLDR's Survey Tool), not translated by the project. The facts come from CLDR too (a country's
current legal tender, its official language, the order of months and days), except a country's
world region, which is the UN M49 table (m49.py: babel's CLDR has no territory containment).
THE ONLY TEXT WRITTEN BY THE PROJECT is the question around the names: one short template per
family and language (QUESTIONS below; the month and weekday ones, one for "next" and one for
"previous", are the hand-written probe's, probe_facts.py) and the probe's prompt frame
"Question: ...\\nAnswer:" (probe_facts.FRAMES). Five families:

    continent  "In which part of the world is the country Kenya?"   Africa / Americas / Asia / Europe / Oceania
    currency   "What is the currency of the country Kenya?"         Kenyan Shilling and 3 other currencies
    language   "What is the official language of the country Chile?" Spanish and 3 other official languages
    month      "It is March now. Which month comes next?"          April and 3 other months (small: 24 items)
    weekday    "Today is Friday. What day is tomorrow?"             Saturday and 3 other days (small: 14 items)

Which facts are asked:
- continent: the UN member states and the Holy See (m49.py) but those across or between continents
  (m49.TRANSCONTINENTAL) and those whose name gives the answer away in some language (South Africa,
  Central African Republic, Spanish "Malasia" contains "Asia"). The answer is M49's region (the
  Americas are one); the four others are the choices.
- currency: the countries with exactly one current legal tender in CLDR (territory_currencies: no end
  date, tender); its name in all seven languages. Many currency names carry the country's adjective
  ("Kenyan Shilling"): the distractors are currencies of countries of the same M49 region, so the
  adjective alone does not always decide.
- language: the countries with exactly one official language in CLDR (get_official_languages;
  script variants of one language count once), named in all seven, less LANGUAGE_SKIP (where the
  one CLDR gives is not the clear answer). Distractors: official languages of other countries of the
  same region, never one the country uses de facto.
- month / weekday: each month (day) with the next and the previous one as the answer; CLDR's
  stand-alone wide names (nominative: Russian "март", not the genitive "марта" of dates).

Distractors are drawn (seeded) from the same category, never the answer, and never a name that
equals another choice's in any language. Parallel items as in probe.py: item k of a family is the
same fact in every language, under the same id (a code, no language in it: "currency-KE"), with the
same choice order, at the same place of the task file (a seeded order). Same prompt and scoring as
the probe (lm-eval multiple_choice, acc and acc_norm). Written at run time into
`cache_dir() / "cldr_tasks" / <version, seed and babel version>`; nothing generated is committed.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lp_prune.config.tasks import CLDR_FAMILIES, cldr_task_name
from lp_prune.errors import ConfigError
from lp_prune.evaluation import m49
from lp_prune.evaluation import probe_facts as facts
from lp_prune.evaluation.local_tasks import multiple_choice_yaml, write_task_files
from lp_prune.evaluation.probe import DEFAULT_SEED, N_CHOICES, ProbeItem, rendered
from lp_prune.languages import LANGUAGES
from lp_prune.storage.cache_lock import cache_dir

CLDR_TAG = "lp_prune_cldr"
CLDR_VERSION = 1  # bump when items change: the cache folder name includes it (and babel's version)
SMALL_FAMILIES = frozenset({"month", "weekday"})  # few items by nature: 12 months, 7 days, two directions

Term = facts.Term

# The project's text: one question per family and language, around CLDR's names.
QUESTIONS: dict[str, Term] = {
    key: facts.term(row)
    for key, row in {
        "continent": "في أي منطقة من العالم تقع دولة {country}؟|In welchem Teil der Welt liegt das Land {country}?|"
        "In which part of the world is the country {country}?|¿En qué parte del mundo está el país {country}?|"
        "В какой части света находится страна {country}?|Nchi ya {country} iko katika sehemu gani ya dunia?|"
        "{country}位于世界哪个地区？",
        "currency": "ما هي عملة دولة {country}؟|Welche Währung hat das Land {country}?|"
        "What is the currency of the country {country}?|¿Cuál es la moneda del país {country}?|"
        "Какая валюта используется в стране {country}?|Sarafu ya nchi ya {country} ni ipi?|{country}使用哪种货币？",
        "language": "ما هي اللغة الرسمية في دولة {country}؟|Welche Amtssprache hat das Land {country}?|"
        "What is the official language of the country {country}?|¿Cuál es el idioma oficial del país {country}?|"
        "Какой язык является официальным в стране {country}?|Lugha rasmi ya nchi ya {country} ni ipi?|"
        "{country}的官方语言是什么？",
    }.items()
}
ORDER_QUESTIONS: dict[tuple[str, str], Term] = {
    ("month", "after"): facts.QUESTIONS["month_after"],
    ("month", "before"): facts.QUESTIONS["month_before"],
    ("weekday", "after"): facts.QUESTIONS["day_after"],
    ("weekday", "before"): facts.QUESTIONS["day_before"],
}

# Countries whose one CLDR official language is not the clear answer.
LANGUAGE_SKIP: dict[str, str] = {
    "ZA": "twelve official languages; CLDR lists English",
    "NZ": "English is the language of use beside Māori, the one CLDR lists",
    "ML": "French, the one CLDR lists, lost its official status in 2023",
    "BF": "French, the one CLDR lists, became a working language only in 2023",
    "NE": "French, the one CLDR lists, lost its official status in 2025",
    "ME": "Montenegrin, which CLDR lists as Serbian in Latin script",
}


# --- CLDR's names ---------------------------------------------------------------------------------------


@functools.cache
def _locale(lang: str):  # -> babel.Locale
    from babel import Locale

    return Locale.parse(lang)


@functools.cache
def cldr_name(kind: str, code: str | int, lang: str) -> str | None:
    """CLDR's name of a territory or region, currency, language, month (1-12) or weekday (0 = Monday)
    in `lang`; None where CLDR has none."""
    locale = _locale(lang)
    table = {
        "territory": locale.territories,
        "currency": locale.currencies,
        "language": locale.languages,
        "month": locale.months["stand-alone"]["wide"],
        "weekday": locale.days["stand-alone"]["wide"],
    }[kind]
    name = table.get(code)
    return str(name).strip() if name else None


@functools.cache
def names(kind: str, code: str | int) -> Term | None:
    """{language: CLDR's name} in all seven languages; None if any lacks one. Callers must not change it."""
    found = {lang: cldr_name(kind, code, lang) for lang in LANGUAGES}
    return found if all(found.values()) else None  # type: ignore[return-value]


def babel_version() -> str:
    import babel

    return babel.__version__


# --- the facts ------------------------------------------------------------------------------------------


def continent_facts() -> dict[str, str]:
    """{country: M49 region} for the countries asked about (see the module docstring)."""
    regions = {region: names("territory", region) for region in m49.REGIONS}
    out = {}
    for country, region in m49.REGION_OF.items():
        country_names = names("territory", country)
        if country in m49.TRANSCONTINENTAL or country_names is None:
            continue
        gives_away = any(
            regions[r][lang].lower() in country_names[lang].lower() for r in m49.REGIONS for lang in LANGUAGES
        )
        if not gives_away:
            out[country] = region
    return out


def current_currencies(country: str) -> list[str]:
    """The currencies CLDR gives a country now (no end date), legal tender or not."""
    from babel.core import get_global

    return [code for code, _start, end, _tender in get_global("territory_currencies").get(country, ()) if end is None]


def currency_facts() -> dict[str, str]:
    """{country: its one current legal tender} where CLDR names it in all seven languages."""
    from babel.core import get_global

    out = {}
    for country in m49.REGION_OF:
        tender = [
            c
            for c, _s, end, is_tender in get_global("territory_currencies").get(country, ())
            if end is None and is_tender
        ]
        if len(tender) == 1 and names("territory", country) and names("currency", tender[0]):
            out[country] = tender[0]
    return out


def official_languages(country: str, de_facto: bool = False) -> set[str]:
    """CLDR's official (with de_facto: also de facto official) languages of a country, script variants
    as one language ('sr_Latn' -> 'sr')."""
    from babel.languages import get_official_languages

    return {code.split("_")[0] for code in get_official_languages(country, de_facto=de_facto)}


def language_facts() -> dict[str, str]:
    """{country: its one official language} where CLDR names country and language in all seven."""
    out = {}
    for country in m49.REGION_OF:
        official = official_languages(country)
        if country in LANGUAGE_SKIP or len(official) != 1:
            continue
        (language,) = official
        if names("territory", country) and names("language", language):
            out[country] = language
    return out


# --- items ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    id: str
    question: Term
    choices: list[Term]
    label: int


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(map(str, (CLDR_TAG, *parts))))  # str seeds: stable across platforms


def choose(
    item_id: str, gold: str, pools: Sequence[Sequence[str]], named: Callable[[str], Term], seed: int
) -> tuple[list[str], int]:
    """The gold answer and N_CHOICES - 1 others in a seeded order; (choices, index of gold).

    Others come from the first pool that gives enough (a pool: candidates of the same category, the
    narrowest first), each drawn at random among those whose name differs from every choice's so far
    in every language.
    """
    rng = _rng(item_id, seed)
    for pool in pools:
        candidates = sorted(set(pool) - {gold})
        rng.shuffle(candidates)
        picked = [gold]
        for candidate in candidates:
            if all(named(candidate)[lang] not in {named(p)[lang] for p in picked} for lang in LANGUAGES):
                picked.append(candidate)
                if len(picked) == N_CHOICES:
                    rng.shuffle(picked)
                    return picked, picked.index(gold)
    raise ValueError(f"{item_id}: fewer than {N_CHOICES - 1} distinct distractors")


def _ask(family: str, country: str) -> Term:
    country_names = names("territory", country)
    assert country_names is not None
    return {lang: QUESTIONS[family][lang].format(country=country_names[lang]) for lang in LANGUAGES}


def _continent(seed: int) -> list[_Spec]:
    specs = []
    for country, region in continent_facts().items():
        choices, label = choose(f"continent-{country}", region, [m49.REGIONS], lambda r: names("territory", r), seed)
        specs.append(
            _Spec(f"continent-{country}", _ask("continent", country), [names("territory", r) for r in choices], label)
        )
    return specs


def _by_region(answers: dict[str, str]) -> dict[str, list[str]]:
    """{M49 region: the answers of its countries} (the narrower pool of distractors)."""
    out: dict[str, list[str]] = {}
    for country, answer in answers.items():
        out.setdefault(m49.REGION_OF[country], []).append(answer)
    return out


def _country_facts(family: str, answers: dict[str, str], kind: str, used: Callable[[str], set[str]], seed: int):
    specs = []
    regional = _by_region(answers)
    everything = sorted(set(answers.values()))
    for country, answer in answers.items():
        taken = used(country) - {answer}  # never offer what the country also uses
        pools = [
            [a for a in regional[m49.REGION_OF[country]] if a not in taken],
            [a for a in everything if a not in taken],
        ]
        item_id = f"{family}-{country}"
        choices, label = choose(item_id, answer, pools, lambda code: names(kind, code), seed)
        specs.append(_Spec(item_id, _ask(family, country), [names(kind, c) for c in choices], label))
    return specs


def _currency(seed: int) -> list[_Spec]:
    return _country_facts("currency", currency_facts(), "currency", lambda c: set(current_currencies(c)), seed)


def _language(seed: int) -> list[_Spec]:
    return _country_facts(
        "language", language_facts(), "language", lambda c: official_languages(c, de_facto=True), seed
    )


def _order(family: str, codes: Sequence[int], seed: int) -> list[_Spec]:
    """Each month (day) with the next and the previous one as the answer; ids number them from 1."""
    specs = []
    key = "month" if family == "month" else "day"
    for i, code in enumerate(codes):
        for direction, step in (("after", 1), ("before", -1)):
            item_id = f"{family}-{direction}-{i + 1}"
            gold = codes[(i + step) % len(codes)]
            others = [c for c in codes if c != code]
            choices, label = choose(
                item_id, str(gold), [[str(c) for c in others]], lambda c: names(family, int(c)), seed
            )
            template, asked = ORDER_QUESTIONS[family, direction], names(family, code)
            question = {lang: template[lang].format(**{key: asked[lang]}) for lang in LANGUAGES}
            specs.append(_Spec(item_id, question, [names(family, int(c)) for c in choices], label))
    return specs


_BUILDERS: dict[str, Callable[[int], list[_Spec]]] = {
    "continent": _continent,
    "currency": _currency,
    "language": _language,
    "month": lambda seed: _order("month", range(1, 13), seed),
    "weekday": lambda seed: _order("weekday", range(7), seed),
}
assert tuple(_BUILDERS) == CLDR_FAMILIES, "lp_prune.config.tasks.CLDR_FAMILIES names the CLDR probe's families"


@functools.lru_cache(maxsize=16)
def _specs(family: str, seed: int) -> tuple[_Spec, ...]:
    if family not in _BUILDERS:
        raise ConfigError(f"unknown CLDR probe family '{family}'; valid: {', '.join(CLDR_FAMILIES)}")
    specs = _BUILDERS[family](seed)
    _rng(family, "order", seed).shuffle(specs)  # a seeded order: eval.limit N takes a random N facts
    return tuple(specs)


def family_items(family: str, lang: str, seed: int = DEFAULT_SEED) -> list[ProbeItem]:
    """The items of one family in one language, in the task file's (seeded) order."""
    return rendered(_specs(family, seed), lang, "CLDR probe")


def item_counts(seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Items per family (the same in every language)."""
    return {family: len(_specs(family, seed)) for family in CLDR_FAMILIES}


# --- lm-eval task files ---------------------------------------------------------------------------------


def cldr_folder(seed: int = DEFAULT_SEED) -> Path:
    return cache_dir() / "cldr_tasks" / f"v{CLDR_VERSION}-s{seed}-babel{babel_version()}"


def write_cldr_tasks(seed: int = DEFAULT_SEED, folder: Path | None = None) -> Path:
    """Write `<task>.jsonl` and `<task>.yaml` for every family and language; return the folder (an include path)."""
    folder = folder or cldr_folder(seed)
    tasks = (
        (
            cldr_task_name(family, lang),
            [asdict(item) for item in family_items(family, lang, seed)],
            task_yaml(cldr_task_name(family, lang), family, lang, folder / f"{cldr_task_name(family, lang)}.jsonl"),
        )
        for family, lang in itertools.product(CLDR_FAMILIES, LANGUAGES)
    )
    return write_task_files(folder, tasks, "CLDR probe tasks")


def task_yaml(name: str, family: str, lang: str, data_file: Path) -> str:
    """The lm-eval task, as the probe's: log-likelihood of each choice after the prompt; acc and acc_norm."""
    header = (
        "Generated by lp_prune.evaluation.probe_cldr: names and facts from the Unicode CLDR (babel "
        f"{babel_version()}; regions: UN M49); only the question template is written by lp_prune."
    )
    metadata = {
        "version": f"{CLDR_VERSION}.0",
        "language": lang,
        "family": family,
        "source": f"Unicode CLDR via babel {babel_version()}" + ("; UN M49 regions" if family == "continent" else ""),
        "project_text": "question template and prompt frame only",
        "small": family in SMALL_FAMILIES,
    }
    return multiple_choice_yaml(name, CLDR_TAG, data_file, "question", lang, header, metadata)
