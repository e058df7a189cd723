"""The field's English perplexity sets, read through `datasets` and cut as the field cuts them.

Papers on pruning report WikiText-2 and C4 perplexity with the recipe of the reference
implementations (IST-DASLab/sparsegpt `datautils.py`, locuslab/wanda `lib/data.py`):

- wikitext2: `load_dataset("Salesforce/wikitext", "wikitext-2-raw-v1", split="test")` (the hub name of
  the former "wikitext"), its `text` rows joined with "\\n\\n";
- c4_en: `load_dataset("allenai/c4", data_files={"validation": "en/c4-validation.00000-of-00008.json.gz"},
  split="validation")` (rows: text, timestamp, url), the first 1100 documents' `text` joined with " ",
  then its first 256 x seqlen tokens.

The joined text is tokenized once, as a whole (the tokenizer's own special tokens, e.g. one BOS at the
very start), and cut into consecutive non-overlapping windows of seqlen tokens; the remainder is
dropped. Unlike lp_prune's per-language windows there is no BOS in front of every window: the numbers
are the field's. A local copy (`data.reference_files`) is the Hub file itself or a folder holding the
dataset repository; either goes through `datasets` with the Hub switched off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lp_prune.data.windows import TokenWindows, count_predicted_bytes
from lp_prune.errors import DataError
from lp_prune.storage.hub import hub_offline


@dataclass(frozen=True)
class ReferenceSet:
    """Where a reference set lives on the Hub and how the field joins and cuts it."""

    name: str
    dataset: str  # Hub id
    config: str | None  # dataset config (None: data_files pick the file)
    data_files: dict[str, str] | None
    split: str
    joiner: str
    columns: tuple[str, ...]  # the Hub file's columns (its dataset card)
    documents: int | None = None  # only the first this many rows (None: all)
    windows: int | None = None  # only the first this many x seqlen tokens (None: all windows)


REFERENCE_RECIPES: dict[str, ReferenceSet] = {
    "wikitext2": ReferenceSet(
        name="wikitext2",
        dataset="Salesforce/wikitext",
        config="wikitext-2-raw-v1",
        data_files=None,
        split="test",
        joiner="\n\n",
        columns=("text",),
    ),
    "c4_en": ReferenceSet(
        name="c4_en",
        dataset="allenai/c4",
        config=None,
        data_files={"validation": "en/c4-validation.00000-of-00008.json.gz"},
        split="validation",
        joiner=" ",
        columns=("text", "timestamp", "url"),
        documents=1100,
        windows=256,
    ),
}

_LOCAL_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".gz": "json"}


def reference_set(name: str) -> ReferenceSet:
    if name not in REFERENCE_RECIPES:
        raise DataError(f"unknown reference set '{name}'; valid: {', '.join(REFERENCE_RECIPES)}")
    return REFERENCE_RECIPES[name]


def load_reference_rows(ref: ReferenceSet, local: str | Path | None = None) -> Any:
    """The set's split as a `datasets.Dataset`: from the Hub, or from a local file or repository folder."""
    import datasets

    where = ref.dataset if local is None else str(local)
    try:
        with _quiet(datasets):
            return _load_rows(datasets, ref, local)
    except DataError:
        raise
    except Exception as err:  # hub, network, file-format errors come in many types
        detail = _innermost(err)
        hint = "" if local is not None else f"; offline, point data.reference_files.{ref.name} at a local copy"
        raise DataError(f"reference set {ref.name} could not be read from {where} ({detail}){hint}") from err


@contextlib.contextmanager
def _quiet(datasets: Any) -> Iterator[None]:
    """datasets' progress bars and its logged parse errors off while a set loads: a refusal is one line."""
    was_enabled = datasets.utils.logging.is_progress_bar_enabled()
    level = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)
        if was_enabled:
            datasets.enable_progress_bars()


def _innermost(err: BaseException) -> str:
    """The deepest cause's type and first line ('ArrowInvalid: JSON parse error: ... in row 2'): the
    outer errors of datasets say only that generating the dataset failed."""
    while err.__cause__ is not None or (err.__context__ is not None and not err.__suppress_context__):
        err = err.__cause__ or err.__context__
    text = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
    return f"{type(err).__name__}{': ' + text if text else ''}"


def _load_rows(datasets: Any, ref: ReferenceSet, local: str | Path | None) -> Any:
    if local is None:
        return datasets.load_dataset(ref.dataset, ref.config, data_files=ref.data_files, split=ref.split)
    path = Path(local).expanduser()
    with hub_offline():
        if path.is_dir():  # a copy of the dataset repository: the Hub's arguments apply
            return datasets.load_dataset(str(path), ref.config, data_files=ref.data_files, split=ref.split)
        if not path.is_file():
            raise DataError(f"data.reference_files.{ref.name}: {path} does not exist")
        builder = _LOCAL_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DataError(
                f"data.reference_files.{ref.name}: {path} is neither .parquet nor .json(.gz)/.jsonl; "
                "give the Hub's file or a folder holding the dataset"
            )
        return datasets.load_dataset(builder, data_files={ref.split: str(path)}, split=ref.split)


def reference_text(ref: ReferenceSet, rows: Any, where: str = "") -> str:
    """The field's evaluation text: the first `documents` rows' text joined with the set's joiner."""
    names = list(getattr(rows, "column_names", None) or [])
    if "text" not in names:
        raise DataError(
            f"reference set {ref.name}{' (' + where + ')' if where else ''} has columns {names}; "
            f"expected the Hub file's {', '.join(ref.columns)}"
        )
    texts: Sequence[str] = rows[: ref.documents]["text"] if ref.documents is not None else rows["text"]
    return ref.joiner.join(texts)


def reference_windows(ref: ReferenceSet, text: str, tokenizer: Any, seqlen: int, max_windows: int = 0) -> TokenWindows:
    """The text tokenized once and cut into consecutive non-overlapping windows of `seqlen` tokens:
    the first `ref.windows` of them when the set has that limit (C4: 256), all otherwise, and at most
    `max_windows` when that is set. n_bytes counts each window's predicted text, as for the languages."""
    ids = torch.tensor(tokenizer(text, verbose=False)["input_ids"], dtype=torch.long)
    if ref.windows is not None:
        ids = ids[: ref.windows * seqlen]
    n_windows = ids.numel() // seqlen
    if max_windows:
        n_windows = min(n_windows, max_windows)
    if n_windows == 0:
        raise DataError(
            f"reference set {ref.name} gives {ids.numel()} tokens, less than one window of {seqlen} "
            "(lower data.reference_seqlen)"
        )
    rows = ids[: n_windows * seqlen].view(n_windows, seqlen).contiguous()
    return TokenWindows(ids=rows, n_bytes=count_predicted_bytes(rows, tokenizer))


def load_reference_windows(
    name: str, tokenizer: Any, seqlen: int, local: str | Path | None = None, max_windows: int = 0
) -> TokenWindows:
    """One reference set's evaluation windows (see the module docstring)."""
    ref = reference_set(name)
    rows = load_reference_rows(ref, local)
    return reference_windows(ref, reference_text(ref, rows, str(local or ref.dataset)), tokenizer, seqlen, max_windows)
