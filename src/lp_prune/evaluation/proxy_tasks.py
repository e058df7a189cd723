"""Offline proxy tasks: "which sentence comes next?" over the packaged held-out text, as lm-eval tasks.

A PROXY, not a benchmark: no multilingual benchmark data ships on PyPI, so offline runs measure
downstream-style accuracy on items built from the project's own evaluation text. One item:

    context  = CONTEXT_SENTENCES consecutive sentences of an evaluation block
    choices  = the sentence that really follows + DISTRACTORS sentences of similar length taken from
               other evaluation blocks of the same language, in a seeded random order
    label    = index of the true continuation

Only the EVALUATION blocks of `lp_prune.data.text.split_documents` are used (with the run's
`data.eval_fraction`), never the calibration blocks; a sentence that also occurs verbatim in the
calibration text is dropped as well. Same text, fraction, size and seed give the same files.

The items are written at run time as JSON lines plus one lm-eval task YAML per language into
`cache_dir() / "proxy_tasks" / <version>`; nothing generated is committed.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lp_prune.config import LANGUAGES
from lp_prune.data.text import packaged_documents, split_documents
from lp_prune.models.loading import cache_dir
from lp_prune.tracking.run_dir import atomic_write_text

PROXY_PREFIX = "lp_prune_proxy_"
PROXY_TAG = "lp_prune_proxy"
PROXY_VERSION = 1  # bump when the item construction changes: the cache folder name includes it
DEFAULT_ITEMS = 50
DEFAULT_SEED = 1234
CONTEXT_SENTENCES = 2
DISTRACTORS = 3
NEAREST_LENGTHS = 12  # distractors are drawn from this many candidates closest in length to the truth

# Languages written without spaces between sentences.
_NO_SPACE_LANGUAGES = frozenset({"zh"})
# A sentence ends at . ! ? ; (Latin, Arabic) followed by a space, or right after CJK full stops.
_SENTENCE_END = re.compile(r"(?<=[.!?؟])\s+|(?<=[。！？])")
_TERMINATORS = tuple(".!?؟。！？")
_MIN_CHARS = {"zh": 8}
_MAX_CHARS = {"zh": 80}
_DEFAULT_MIN_CHARS = 25
_DEFAULT_MAX_CHARS = 200


@dataclass(frozen=True)
class Sentence:
    text: str
    block: int  # index of the evaluation block it comes from
    position: int  # index within that block's sentences


@dataclass(frozen=True)
class ProxyItem:
    id: str
    context: str
    choices: list[str]
    label: int


def proxy_task_name(lang: str) -> str:
    return f"{PROXY_PREFIX}{lang}"


def proxy_language(task: str) -> str | None:
    """'lp_prune_proxy_sw' -> 'sw'; None for any other name."""
    lang = task.removeprefix(PROXY_PREFIX)
    return lang if task.startswith(PROXY_PREFIX) and lang in LANGUAGES else None


def block_sentences(block: str, lang: str) -> list[str]:
    """Complete sentences of a block, in order; headings and cut-off fragments are dropped."""
    low, high = _MIN_CHARS.get(lang, _DEFAULT_MIN_CHARS), _MAX_CHARS.get(lang, _DEFAULT_MAX_CHARS)
    found = []
    for line in block.splitlines():
        for piece in _SENTENCE_END.split(line.strip()):
            piece = " ".join(piece.split())
            # A sentence must end like one: this drops headings, list labels and text cut by the block edge.
            if low <= len(piece) <= high and piece.endswith(_TERMINATORS) and not piece.startswith(("*", "#")):
                found.append(piece)
    return found


def join_sentences(sentences: Sequence[str], lang: str) -> str:
    return ("" if lang in _NO_SPACE_LANGUAGES else " ").join(sentences)


def build_items(
    evaluation_blocks: Sequence[str],
    calibration_blocks: Sequence[str],
    lang: str,
    n_items: int = DEFAULT_ITEMS,
    seed: int = DEFAULT_SEED,
) -> list[ProxyItem]:
    """Up to `n_items` next-sentence items from the evaluation blocks (fewer if the text is short)."""
    calibration_text = "\n".join(calibration_blocks)
    per_block = [[s for s in block_sentences(block, lang) if s not in calibration_text] for block in evaluation_blocks]
    pool = [Sentence(text, b, i) for b, sents in enumerate(per_block) for i, text in enumerate(sents)]
    rng = random.Random(f"{PROXY_TAG}:{lang}:{seed}")  # str seeds are stable across runs and platforms
    targets = [s for s in pool if s.position >= CONTEXT_SENTENCES]
    picked = sorted(rng.sample(targets, min(n_items, len(targets))), key=lambda s: (s.block, s.position))
    items = []
    for target in picked:
        context = per_block[target.block][target.position - CONTEXT_SENTENCES : target.position]
        choices = [target.text, *_distractors(target, pool, rng)]
        if len(choices) < DISTRACTORS + 1:
            continue  # too little text elsewhere: no item rather than an easier one
        rng.shuffle(choices)
        item_id = f"{lang}-{target.block}-{target.position}"
        items.append(ProxyItem(item_id, join_sentences(context, lang), choices, choices.index(target.text)))
    return items


def _distractors(target: Sentence, pool: Sequence[Sentence], rng: random.Random) -> list[str]:
    """Sentences from other blocks, close in length to the truth, so length alone does not give it away."""
    texts = sorted({s.text for s in pool if s.block != target.block and s.text != target.text})
    nearest = sorted(texts, key=lambda text: (abs(len(text) - len(target.text)), text))[:NEAREST_LENGTHS]
    return rng.sample(nearest, min(DISTRACTORS, len(nearest)))


def language_items(
    lang: str, eval_fraction: float, n_items: int = DEFAULT_ITEMS, seed: int = DEFAULT_SEED
) -> list[ProxyItem]:
    """The proxy items of one language from the packaged text, split as a run with `eval_fraction` splits it."""
    calibration, evaluation = split_documents(packaged_documents(lang), eval_fraction)
    return build_items(evaluation, calibration, lang, n_items, seed)


def proxy_folder(eval_fraction: float, n_items: int = DEFAULT_ITEMS, seed: int = DEFAULT_SEED) -> Path:
    """Where the proxy tasks of these settings live; different settings never share files."""
    return cache_dir() / "proxy_tasks" / f"v{PROXY_VERSION}-f{eval_fraction:g}-n{n_items}-s{seed}"


def write_proxy_tasks(
    languages: Sequence[str],
    eval_fraction: float,
    n_items: int = DEFAULT_ITEMS,
    seed: int = DEFAULT_SEED,
    folder: Path | None = None,
) -> Path:
    """Write `<task>.jsonl` and `<task>.yaml` for each language; return the folder (an lm-eval include path)."""
    folder = folder or proxy_folder(eval_fraction, n_items, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for lang in languages:
        name = proxy_task_name(lang)
        items = language_items(lang, eval_fraction, n_items, seed)
        lines = "".join(json.dumps(item.__dict__, ensure_ascii=False) + "\n" for item in items)
        _write_if_changed(folder / f"{name}.jsonl", lines)
        _write_if_changed(folder / f"{name}.yaml", task_yaml(name, lang, folder / f"{name}.jsonl"))
    return folder


def task_yaml(name: str, lang: str, data_file: Path) -> str:
    """The lm-eval task: log-likelihood of each choice after the context; acc and byte-normalised acc."""
    delimiter = "" if lang in _NO_SPACE_LANGUAGES else " "
    return f"""# Generated by lp_prune.evaluation.proxy_tasks: a PROXY task, not a published benchmark.
task: {name}
tag: [{PROXY_TAG}]
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(data_file))}
output_type: multiple_choice
test_split: test
fewshot_split: test
doc_to_text: context
doc_to_choice: choices
doc_to_target: label
target_delimiter: {json.dumps(delimiter)}
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: {PROXY_VERSION}.0
  language: {lang}
"""


def _write_if_changed(path: Path, text: str) -> None:
    # Rewriting identical files would change their mtime and make datasets rebuild its cache.
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
