"""MKQA (Longpre et al., 2021) for lm-eval: open-domain questions answered by generation, scored by
answer matching as in open QA (exact match and token F1 after normalisation, best over the gold
answers and their aliases).

lm-eval ships no MKQA task, so lp_prune ships one (`evaluation/tasks/mkqa/`, tasks `mkqa_<lang>`)
whose YAML points its `process_docs` / `process_results` here. The data comes from the Hugging Face
Hub (`apple/mkqa`, its parquet conversion; needs network). MKQA has no Swahili: there is no
`mkqa_sw`. Questions whose answer is "unanswerable" or a long answer are left out: they have no
short string to match.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Any

from lp_prune.languages import LANGUAGE_TABLE

# Project language -> MKQA's language key (Chinese: simplified, mainland); MKQA has no Swahili.
MKQA_LANGUAGES: dict[str, str] = {code: lang.mkqa for code, lang in LANGUAGE_TABLE.items() if lang.mkqa}

# MKQA's answer types, in the order of its ClassLabel.
ANSWER_TYPES = (
    "entity",
    "long_answer",
    "unanswerable",
    "date",
    "number",
    "number_with_unit",
    "short_phrase",
    "binary",
)
_NO_SHORT_ANSWER = frozenset({"unanswerable", "long_answer"})

_ARTICLES: dict[str, frozenset[str]] = {
    "en": frozenset({"a", "an", "the"}),
    "de": frozenset({"der", "die", "das", "den", "dem", "des", "ein", "eine", "einer", "einem", "einen", "eines"}),
    "es": frozenset({"el", "la", "los", "las", "un", "una", "unos", "unas"}),
}
# Languages without spaces between words: every ideograph is one token (MKQA's "mixed segmentation").
_CHARACTER_TOKENS = frozenset(code for code, lang in LANGUAGE_TABLE.items() if not lang.word_spaces)
_IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def answer_type(value: Any) -> str:
    """The type name, whether the data holds the ClassLabel index or the name."""
    return ANSWER_TYPES[value] if isinstance(value, int) else str(value)


def gold_answers(answers: Sequence[dict[str, Any]] | None) -> list[str]:
    """Every acceptable answer string (text and aliases) of the answers with a short answer."""
    golds: list[str] = []
    for answer in answers or []:
        if answer_type(answer.get("type")) in _NO_SHORT_ANSWER:
            continue
        for text in [answer.get("text"), *(answer.get("aliases") or [])]:
            if text and text.strip() and text.strip() not in golds:
                golds.append(text.strip())
    return golds


def mkqa_docs(dataset: Any, lang: str) -> Any:
    """MKQA rows -> {"question", "answers", "language"} for `lang`, without questions lacking a short answer."""
    key = MKQA_LANGUAGES[lang]

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "question": (row["queries"] or {}).get(key) or "",
            "answers": gold_answers((row["answers"] or {}).get(key)),
            "language": lang,
        }

    converted = dataset.map(convert, remove_columns=dataset.column_names)
    return converted.filter(lambda doc: bool(doc["question"]) and bool(doc["answers"]))


# One process_docs per language: lm-eval passes only the dataset, so the language is in the name.
def process_docs_ar(dataset: Any) -> Any:
    return mkqa_docs(dataset, "ar")


def process_docs_de(dataset: Any) -> Any:
    return mkqa_docs(dataset, "de")


def process_docs_en(dataset: Any) -> Any:
    return mkqa_docs(dataset, "en")


def process_docs_es(dataset: Any) -> Any:
    return mkqa_docs(dataset, "es")


def process_docs_ru(dataset: Any) -> Any:
    return mkqa_docs(dataset, "ru")


def process_docs_zh(dataset: Any) -> Any:
    return mkqa_docs(dataset, "zh")


def answer_tokens(text: str, lang: str) -> list[str]:
    """Normalised tokens: NFKC, lower case, punctuation removed, articles dropped, ideographs split."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if _is_punctuation(ch) else ch for ch in text)
    if lang in _CHARACTER_TOKENS:
        text = _IDEOGRAPH.sub(lambda match: f" {match.group(0)} ", text)
    articles = _ARTICLES.get(lang, frozenset())
    return [token for token in text.split() if token not in articles]


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def exact_match(prediction: str, golds: Sequence[str], lang: str) -> float:
    predicted = answer_tokens(prediction, lang)
    return float(any(predicted == answer_tokens(gold, lang) for gold in golds))


def token_f1(prediction: str, golds: Sequence[str], lang: str) -> float:
    """Best token-overlap F1 against any gold answer."""
    predicted = answer_tokens(prediction, lang)
    return max((_f1(predicted, answer_tokens(gold, lang)) for gold in golds), default=0.0)


def _f1(predicted: list[str], gold: list[str]) -> float:
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return float(predicted == gold)  # both empty counts as a match
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def process_results(doc: dict[str, Any], results: Sequence[str]) -> dict[str, float]:
    """lm-eval hook: the generated answer (first line) against the gold answers."""
    prediction = results[0].strip().split("\n")[0] if results else ""
    return {
        "exact_match": exact_match(prediction, doc["answers"], doc["language"]),
        "f1": token_f1(prediction, doc["answers"], doc["language"]),
    }
