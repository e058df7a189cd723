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

Beyond the seven: MC4_LANGUAGES (mC4's 108 language codes, from the allenai/c4 dataset card) may
calibrate and evaluate on mC4 or local files, and BELEBELE_CONFIGS (Belebele's 122 FLORES-200
configs, such as fra_Latn) name Belebele tasks. Both ship as lists in lp_prune/data; packaged
(offline) text and the relation table exist for the seven only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def _code_list(name: str) -> tuple[str, ...]:
    """A list shipped in lp_prune/data: one code a line, '#' lines are comments."""
    lines = (Path(__file__).parent / "data" / name).read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


# mC4's languages by the code that names their allenai/c4 config ("en" stands for mC4's "en-multi").
MC4_LANGUAGES: tuple[str, ...] = _code_list("mc4_languages.txt")
# Belebele's configs (lm-eval task belebele_<config>).
BELEBELE_CONFIGS: tuple[str, ...] = _code_list("belebele_configs.txt")


def check_language_code(lang: str, key: str) -> None:
    """A ConfigError naming `key` unless `lang` is one of LANGUAGES."""
    if lang not in LANGUAGES:
        raise ConfigError(f"{key}: unknown language '{lang}'; valid languages: {', '.join(LANGUAGES)}")


def check_known_language(lang: str, key: str) -> None:
    """A ConfigError naming `key` unless `lang` is one of the seven or an mC4 language code."""
    if lang not in LANGUAGES and lang not in MC4_LANGUAGES:
        raise ConfigError(
            f"{key}: unknown language '{lang}'; valid: the study's {', '.join(LANGUAGES)} or one of mC4's "
            f"{len(MC4_LANGUAGES)} language codes (e.g. fr, hi, ja; lp_prune.languages.MC4_LANGUAGES)"
        )


def check_source_language(lang: str, key: str, source: str) -> None:
    """A ConfigError unless data.source `source` has text in `lang`: mc4 and files take any mC4 code,
    the packaged text (and the sources that evaluate on it) only the seven."""
    check_known_language(lang, key)
    if source not in ("mc4", "files") and lang not in LANGUAGES:
        raise ConfigError(
            f"{key}: data.source {source} has text in {', '.join(LANGUAGES)} only, not '{lang}'; "
            "use data.source mc4 (network) or files for other languages"
        )


def mc4_config(lang: str) -> str:
    """The `allenai/c4` config of `lang`'s mC4 text: the table's for the seven, else the code itself."""
    check_known_language(lang, "language")
    return LANGUAGE_TABLE[lang].mc4 if lang in LANGUAGE_TABLE else lang


def check_belebele_config(config: str, key: str) -> None:
    """A ConfigError naming `key` unless `config` is one of Belebele's configs."""
    if config not in BELEBELE_CONFIGS:
        raise ConfigError(
            f"{key}: '{config}' is not a Belebele config; valid: one of its {len(BELEBELE_CONFIGS)} FLORES-200 "
            "codes such as fra_Latn, hin_Deva, jpn_Jpan (lp_prune.languages.BELEBELE_CONFIGS)"
        )


def relation(target: str, calibration: str) -> str:
    """How a calibration language relates to a target language, for the claim that neither a similar
    nor an outlier language gives a consistent advantage:

    - "similar": same script and same family (for de: en, es);
    - "outlier": another script and another family (for de: ar, zh), or a low-resource language (sw);
    - "other": the rest (for de: ru, same family in another script), and any pair with a language
      outside the seven; "self" for the target itself.
    """
    if target == calibration:
        return "self"
    if target not in LANGUAGE_TABLE or calibration not in LANGUAGE_TABLE:
        return "other"  # the table's facts (family, script, resource) are the seven's only
    a, b = LANGUAGE_TABLE[target], LANGUAGE_TABLE[calibration]
    if b.resource == "low" and a.resource != "low":
        return "outlier"
    if a.script == b.script and a.family == b.family:
        return "similar"
    if a.script != b.script and a.family != b.family:
        return "outlier"
    return "other"
