"""A cheap check that a text is written in a given language: its script, then (Latin) its stopwords.

APPROXIMATE, meant to catch generated calibration text that drifted into another language, not to
identify languages in general:
- script: the share of the text's words (for Chinese: characters) in the language's script (Arabic
  for ar, Cyrillic for ru, CJK ideographs for zh, Latin for de/en/es/sw), from Unicode names;
- Latin-script languages: the text's words are matched against short stopword lists of de, en, es
  and sw; the target must have the most hits, and its hits must be at least MIN_STOPWORD_SHARE of
  the words. Shared words ("in", "a", "la") count for every list that has them.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from lp_prune.languages import LANGUAGE_TABLE

SCRIPTS: dict[str, str] = {code: lang.script for code, lang in LANGUAGE_TABLE.items()}
MIN_STOPWORD_SHARE = 0.05


def _stopwords(words: str) -> frozenset[str]:
    return frozenset(words.split())


STOPWORDS = {
    "de": _stopwords(
        """der die das und in den von zu mit sich des auf für ist im dem nicht ein eine als auch es an werden
        aus er hat dass sie nach wird bei einer um am sind noch wie einem über so zum war haben nur oder aber
        vor zur bis mehr durch man ich wir ihr sein seine wenn kann"""
    ),
    "en": _stopwords(
        """the and of to in is that it was for on are with as his they at be this have from or by not but what
        were we when an which their there been has would will can you she he her had one all so if my our"""
    ),
    "es": _stopwords(
        """de la que el en y a los del se las por un para con no una su al lo como más pero sus le ya o este
        porque esta entre cuando muy sin sobre también me hasta hay donde desde todo nos durante todos uno
        les ni es son fue era yo él ella"""
    ),
    "sw": _stopwords(
        """na ya wa kwa katika ni la za kuwa cha hii hiyo lakini pia au kama sana yake wake vya zao wao huo
        hilo baada kabla hadi kutoka mimi wewe yeye sisi ambayo ambao kila watu siku bado tu nini hivyo kisha
        pamoja hata zaidi wakati kwamba"""
    ),
}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


@dataclass(frozen=True)
class LanguageCheck:
    passed: bool
    script_share: float  # share of the words (CJK: characters) in the language's script
    reason: str  # "" when passed


def script_of(char: str) -> str | None:
    """'LATIN', 'CYRILLIC', 'ARABIC', 'CJK' or another first word of the Unicode name; None if unnamed."""
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else None


def script_share(text: str, lang: str) -> float:
    """Share of the text's written units in `lang`'s script: a CJK character is a unit, and so is a run of
    letters of one other script (a word), so a Latin acronym in Chinese text weighs as one word, not as
    its letters. 0 for a text without letters."""
    units: list[str | None] = []
    previous = None
    for char in text:
        script = script_of(char) if char.isalpha() else None
        if script is not None and (script == "CJK" or script != previous):
            units.append(script)
        previous = script
    if not units:
        return 0.0
    return sum(unit == SCRIPTS[lang] for unit in units) / len(units)


def stopword_hits(text: str) -> tuple[int, dict[str, int]]:
    """(number of words, stopword hits per Latin-script language)."""
    words = [word.lower() for word in _WORD.findall(text)]
    return len(words), {lang: sum(word in stops for word in words) for lang, stops in STOPWORDS.items()}


def check_text_language(text: str, lang: str, min_script_share: float = 0.8) -> LanguageCheck:
    """Does `text` look like `lang`? See the module docstring for how approximate this is."""
    share = script_share(text, lang)
    if share < min_script_share:
        return LanguageCheck(False, share, f"{share:.0%} of the words in {SCRIPTS[lang]} script")
    if lang in STOPWORDS:
        n_words, hits = stopword_hits(text)
        rivals = {other: n for other, n in hits.items() if other != lang}
        rival = max(rivals, key=rivals.__getitem__)
        if rivals[rival] >= hits[lang]:
            return LanguageCheck(False, share, f"stopwords: {rival} {rivals[rival]}, {lang} {hits[lang]}")
        if hits[lang] < MIN_STOPWORD_SHARE * n_words:
            return LanguageCheck(False, share, f"only {hits[lang]} {lang} stopwords in {n_words} words")
    return LanguageCheck(True, share, "")
