"""The study's seven languages and what the project knows about each: one table, read by the config,
data/ and evaluation/.

    LANGUAGE_TABLE["sw"].mc4        # 'sw': the allenai/c4 config of its mC4 text
    LANGUAGES                       # ('ar', 'de', 'en', 'es', 'ru', 'sw', 'zh'), the table's order

Per language: its code (ISO 639-1, the project's), English name, family, whether it is a
low-resource language (`relation` reads both), script (the first word of the
Unicode character names: LATIN, ARABIC, CYRILLIC, CJK), whether words are separated by spaces, the
dataset-build folder of its packaged text, the `allenai/c4` config of its mC4 text, and the names of
its downstream tasks: Belebele's FLORES-200 code, the lm-eval tasks of ARC, HellaSwag and MMLU
(Okapi's; None: lm-eval has no such task) and MKQA's language key (None: MKQA lacks the language).
One family per benchmark: Okapi translated ARC-Challenge and HellaSwag from the English originals and
ships no English copy, so English reads the originals (the items Okapi translated); Okapi ships its
own English MMLU (m_mmlu_en), so MMLU is Okapi's in every language.
"""

from __future__ import annotations

from dataclasses import dataclass

from lp_prune.errors import ConfigError


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    family: str  # language family (relations between calibration and target languages)
    resource: str  # "high" or "low": how much text of it pretraining corpora hold (Swahili: low)
    script: str
    word_spaces: bool  # words (and sentences) separated by spaces; Chinese: none
    packaged: str  # dataset-build folder (ISO 639-3)
    # mC4's languages are configs named by their code, except English: config "en" is C4 (the
    # English-only corpus of the T5 paper) and mC4's English is "en-multi" (both on the dataset card).
    # The study calibrates every language on mC4, so English reads "en-multi".
    mc4: str
    belebele: str  # lm-eval task belebele_<this>
    arc: str | None
    hellaswag: str | None
    mmlu: str | None
    mkqa: str | None  # MKQA's key (Chinese: simplified, mainland)


_TABLE = (
    Language(
        code="ar",
        family="Afro-Asiatic",
        resource="high",
        name="Arabic",
        script="ARABIC",
        word_spaces=True,
        packaged="ara",
        mc4="ar",
        belebele="arb_Arab",
        arc="arc_ar",
        hellaswag="hellaswag_ar",
        mmlu="m_mmlu_ar",
        mkqa="ar",
    ),
    Language(
        code="de",
        family="Indo-European",
        resource="high",
        name="German",
        script="LATIN",
        word_spaces=True,
        packaged="deu",
        mc4="de",
        belebele="deu_Latn",
        arc="arc_de",
        hellaswag="hellaswag_de",
        mmlu="m_mmlu_de",
        mkqa="de",
    ),
    Language(
        code="en",
        family="Indo-European",
        resource="high",
        name="English",
        script="LATIN",
        word_spaces=True,
        packaged="eng",
        mc4="en-multi",
        belebele="eng_Latn",
        arc="arc_challenge",
        hellaswag="hellaswag",
        mmlu="m_mmlu_en",
        mkqa="en",
    ),
    Language(
        code="es",
        family="Indo-European",
        resource="high",
        name="Spanish",
        script="LATIN",
        word_spaces=True,
        packaged="spa",
        mc4="es",
        belebele="spa_Latn",
        arc="arc_es",
        hellaswag="hellaswag_es",
        mmlu="m_mmlu_es",
        mkqa="es",
    ),
    Language(
        code="ru",
        family="Indo-European",
        resource="high",
        name="Russian",
        script="CYRILLIC",
        word_spaces=True,
        packaged="rus",
        mc4="ru",
        belebele="rus_Cyrl",
        arc="arc_ru",
        hellaswag="hellaswag_ru",
        mmlu="m_mmlu_ru",
        mkqa="ru",
    ),
    Language(
        code="sw",
        family="Niger-Congo",
        resource="low",
        name="Swahili",
        script="LATIN",
        word_spaces=True,
        packaged="swa",
        mc4="sw",
        belebele="swh_Latn",
        arc=None,
        hellaswag=None,
        mmlu=None,
        mkqa=None,
    ),
    Language(
        code="zh",
        family="Sino-Tibetan",
        resource="high",
        name="Chinese",
        script="CJK",
        word_spaces=False,
        packaged="zho",
        mc4="zh",
        belebele="zho_Hans",
        arc="arc_zh",
        hellaswag=None,
        mmlu="m_mmlu_zh",
        mkqa="zh_cn",
    ),
)
LANGUAGE_TABLE: dict[str, Language] = {lang.code: lang for lang in _TABLE}
LANGUAGES: tuple[str, ...] = tuple(LANGUAGE_TABLE)


def check_language_code(lang: str, key: str) -> None:
    """A ConfigError naming `key` unless `lang` is one of LANGUAGES."""
    if lang not in LANGUAGES:
        raise ConfigError(f"{key}: unknown language '{lang}'; valid languages: {', '.join(LANGUAGES)}")


def relation(target: str, calibration: str) -> str:
    """How a calibration language relates to a target language, for the claim that neither a similar
    nor an outlier language gives a consistent advantage:

    - "similar": same script and same family (for de: en, es);
    - "outlier": another script and another family (for de: ar, zh), or a low-resource language (sw);
    - "other": the rest (for de: ru, same family in another script); "self" for the target itself.
    """
    if target == calibration:
        return "self"
    a, b = LANGUAGE_TABLE[target], LANGUAGE_TABLE[calibration]
    if b.resource == "low" and a.resource != "low":
        return "outlier"
    if a.script == b.script and a.family == b.family:
        return "similar"
    if a.script != b.script and a.family != b.family:
        return "outlier"
    return "other"
