"""Offline proxy tasks: "which sentence comes next?" over the packaged held-out text, as lm-eval tasks.

A PROXY, not a benchmark: no multilingual benchmark data ships on PyPI, so offline runs measure
downstream-style accuracy on items built from the project's own evaluation text. One item:

    context  = one sentence of an evaluation block (CONTEXT_SENTENCES)
    choices  = the sentence that really follows it + DISTRACTORS sentences of similar length taken
               from other evaluation blocks of the same language, in a seeded random order
    label    = index of the true continuation

Only the EVALUATION blocks of `lp_prune.data.text.split_documents` are used (with the run's
`data.eval_fraction`), never the calibration blocks; a sentence that also occurs verbatim in the
calibration text is dropped as well. Same text, fraction, size and seed give the same files.

Every sentence that can be an item is one (DEFAULT_ITEMS = None: as many as the held-out text
allows; at eval_fraction 0.2: ar 98, de 103, en 1143, es 63, ru 108, sw 79, zh 67). Items are
written in a seeded random order, so lm-eval's `limit` (the first n) takes a random subset.

The items are written at run time as JSON lines plus one lm-eval task YAML per language into
`cache_dir() / "proxy_tasks" / <version and settings>`; nothing generated is committed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lp_prune.config.tasks import proxy_task_name
from lp_prune.data.text import packaged_documents, split_documents
from lp_prune.evaluation.local_tasks import multiple_choice_yaml, write_task_files
from lp_prune.languages import LANGUAGE_TABLE
from lp_prune.storage.cache_lock import cache_dir

PROXY_TAG = "lp_prune_proxy"
PROXY_VERSION = 2  # bump when the item construction changes: the cache folder name includes it
DEFAULT_ITEMS: int | None = None  # None: every item the held-out text allows
DEFAULT_SEED = 1234
CONTEXT_SENTENCES = 1
DISTRACTORS = 3
NEAREST_LENGTHS = 12  # distractors are drawn from this many candidates closest in length to the truth

# Languages written without spaces between sentences.
_NO_SPACE_LANGUAGES = frozenset(code for code, lang in LANGUAGE_TABLE.items() if not lang.word_spaces)
# A sentence ends at . ! ? (Latin, Arabic) followed by a space, or right after CJK full stops.
_SENTENCE_END = re.compile(r"(?<=[.!?؟])\s+|(?<=[。！？])")
_TERMINATORS = tuple(".!?؟。！？")


@dataclass(frozen=True)
class Lengths:
    """Character limits that keep items short: the 262k-vocabulary lm_head makes every token count on CPU."""

    choice_min: int = 25
    choice_max: int = 160
    context_max: int = 240


# Chinese packs about three times the content into a character.
_LENGTHS = {"zh": Lengths(choice_min=8, choice_max=60, context_max=90)}


def lengths(lang: str) -> Lengths:
    return _LENGTHS.get(lang, Lengths())


@dataclass(frozen=True)
class Sentence:
    text: str
    block: int  # index of the evaluation block it comes from
    position: int  # index within that block's pieces


@dataclass(frozen=True)
class ProxyItem:
    id: str
    context: str
    choices: list[str]
    label: int


def block_sentences(block: str) -> list[str | None]:
    """The pieces of a block in order: a sentence, or None for a piece that is none.

    None (a heading, a list label, text cut off by the block edge) breaks the passage: a sentence
    after it does not continue the sentence before it.
    """
    pieces: list[str | None] = []
    for line in block.splitlines():
        for piece in _SENTENCE_END.split(line.strip()):
            piece = " ".join(piece.split())
            if piece:
                is_sentence = piece.endswith(_TERMINATORS) and not piece.startswith(("*", "#"))
                pieces.append(piece if is_sentence else None)
    return pieces


def join_sentences(sentences: Sequence[str], lang: str) -> str:
    return ("" if lang in _NO_SPACE_LANGUAGES else " ").join(sentences)


def build_items(
    evaluation_blocks: Sequence[str],
    calibration_blocks: Sequence[str],
    lang: str,
    n_items: int | None = DEFAULT_ITEMS,
    seed: int = DEFAULT_SEED,
) -> list[ProxyItem]:
    """Up to `n_items` (None: all) next-sentence items from the evaluation blocks, in a seeded random order."""
    calibration_text = "\n".join(calibration_blocks)
    # A sentence that also occurs in the calibration text is treated as no sentence at all.
    per_block = [
        [p if p is not None and p not in calibration_text else None for p in block_sentences(block)]
        for block in evaluation_blocks
    ]
    limits = lengths(lang)
    pool = [
        Sentence(text, b, i)
        for b, pieces in enumerate(per_block)
        for i, text in enumerate(pieces)
        if text is not None and limits.choice_min <= len(text) <= limits.choice_max
    ]
    targets = [s for s in pool if _context(per_block[s.block], s.position, lang) is not None]
    rng = random.Random(f"{PROXY_TAG}:{lang}:{seed}")  # str seeds are stable across runs and platforms
    rng.shuffle(targets)  # a seeded order: the first n items (lm-eval's limit) are a random subset
    picked = targets if n_items is None else targets[:n_items]
    items = []
    for target in picked:
        choices = [target.text, *_distractors(target, pool, rng)]
        if len(choices) < DISTRACTORS + 1:
            continue  # too little text elsewhere: no item rather than an easier one
        rng.shuffle(choices)
        context = _context(per_block[target.block], target.position, lang)
        item_id = f"{lang}-{target.block}-{target.position}"
        items.append(ProxyItem(item_id, context, choices, choices.index(target.text)))
    return items


def _context(pieces: Sequence[str | None], position: int, lang: str) -> str | None:
    """The CONTEXT_SENTENCES sentences right before `position`, joined; None if there are not that many."""
    if position < CONTEXT_SENTENCES:
        return None
    before = pieces[position - CONTEXT_SENTENCES : position]
    if any(p is None for p in before):
        return None
    context = join_sentences(before, lang)
    return context if len(context) <= lengths(lang).context_max else None


def _distractors(target: Sentence, pool: Sequence[Sentence], rng: random.Random) -> list[str]:
    """Sentences from other blocks, close in length to the truth, so length alone does not give it away."""
    texts = sorted({s.text for s in pool if s.block != target.block and s.text != target.text})
    nearest = sorted(texts, key=lambda text: (abs(len(text) - len(target.text)), text))[:NEAREST_LENGTHS]
    return rng.sample(nearest, min(DISTRACTORS, len(nearest)))


def language_items(
    lang: str, eval_fraction: float, n_items: int | None = DEFAULT_ITEMS, seed: int = DEFAULT_SEED
) -> list[ProxyItem]:
    """The proxy items of one language from the packaged text, split as a run with `eval_fraction` splits it."""
    calibration, evaluation = split_documents(packaged_documents(lang), eval_fraction)
    return build_items(evaluation, calibration, lang, n_items, seed)


def proxy_folder(eval_fraction: float, n_items: int | None = DEFAULT_ITEMS, seed: int = DEFAULT_SEED) -> Path:
    """Where the proxy tasks of these settings live; different settings never share files."""
    size = "all" if n_items is None else n_items
    return cache_dir() / "proxy_tasks" / f"v{PROXY_VERSION}-f{eval_fraction:g}-n{size}-s{seed}"


def item_counts(languages: Sequence[str], eval_fraction: float, n_items: int | None = DEFAULT_ITEMS) -> dict[str, int]:
    """Items per language the held-out text gives (before any eval.limit)."""
    return {lang: len(language_items(lang, eval_fraction, n_items)) for lang in languages}


def write_proxy_tasks(
    languages: Sequence[str],
    eval_fraction: float,
    n_items: int | None = DEFAULT_ITEMS,
    seed: int = DEFAULT_SEED,
    folder: Path | None = None,
) -> Path:
    """Write `<task>.jsonl` and `<task>.yaml` for each language; return the folder (an lm-eval include path)."""
    folder = folder or proxy_folder(eval_fraction, n_items, seed)
    tasks = (
        (
            proxy_task_name(lang),
            [asdict(item) for item in language_items(lang, eval_fraction, n_items, seed)],
            task_yaml(proxy_task_name(lang), lang, folder / f"{proxy_task_name(lang)}.jsonl"),
        )
        for lang in languages
    )
    return write_task_files(folder, tasks, "proxy tasks")


def task_yaml(name: str, lang: str, data_file: Path) -> str:
    """The lm-eval task: log-likelihood of each choice after the context; acc and byte-normalised acc."""
    header = "Generated by lp_prune.evaluation.proxy_tasks: a PROXY task, not a published benchmark."
    metadata = {"version": f"{PROXY_VERSION}.0", "language": lang}
    return multiple_choice_yaml(name, PROXY_TAG, data_file, "context", lang, header, metadata)
