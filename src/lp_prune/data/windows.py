"""Token windows: fixed-length rows of token ids for calibration and evaluation.

Every window starts with the tokenizer's BOS token when it has one (Gemma and Llama degrade badly
without it), followed by text tokens. `n_bytes` counts the UTF-8 bytes of the text the window's
predicted tokens (all after the first) cover, for bits per byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lp_prune.errors import ConfigError, DataError

_INTEGER_DTYPES = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}
_TOKEN_FILE_CONTENT = "it must hold one dense [n, seqlen] tensor of integer token ids (torch.save or numpy.save)"


@dataclass
class TokenWindows:
    """ids: LongTensor [n, seqlen]; n_bytes: LongTensor [n], UTF-8 bytes of each window's predicted text.

    origins: where each row came from (one JSON-ready dict per row, for the run's calibration record);
    empty when nobody recorded it (evaluation windows).
    """

    ids: torch.Tensor
    n_bytes: torch.Tensor
    origins: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return self.ids.shape[0]

    @property
    def seqlen(self) -> int:
        return self.ids.shape[1]

    def share(self, rank: int, world_size: int) -> TokenWindows:
        """Process `rank`'s contiguous share of the windows (see shard_rows)."""
        return TokenWindows(shard_rows(self.ids, rank, world_size), shard_rows(self.n_bytes, rank, world_size))


def shard_rows(rows: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process `rank`'s contiguous share of the rows (data parallel; possibly empty); all rows when alone.

    Contiguous shares keep each process's work in the order a single process would do it.
    """
    start, end = shard_bounds(len(rows), rank, world_size)
    return rows[start:end]


def shard_bounds(n_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of process `rank`'s share of n_rows: the first n_rows % world_size shares hold one more."""
    share, extra = divmod(n_rows, max(world_size, 1))
    start = rank * share + min(rank, extra)
    return start, start + share + (rank < extra)


def check_seqlen(seqlen: int, max_positions: int | None, key: str = "data.seqlen") -> None:
    """A window must fit the model's context; `max_positions=None` means unknown, so no check."""
    if max_positions is not None and seqlen > max_positions:
        raise ConfigError(f"{key} {seqlen} exceeds the model's context of {max_positions} tokens")


def bos_ids(tokenizer: Any) -> list[int]:
    """[bos_token_id] when the tokenizer has a BOS token, else []."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return [] if bos is None else [int(bos)]


def text_tokens_per_window(tokenizer: Any, seqlen: int) -> int:
    n_text = seqlen - len(bos_ids(tokenizer))
    if n_text < 1:
        raise ConfigError(f"a window of {seqlen} tokens leaves no room for text after BOS; use at least 2")
    return n_text


def tokenize(texts: Sequence[str], tokenizer: Any) -> list[list[int]]:
    """Token ids of each text, without special tokens (BOS is added per window, not per text)."""
    if not texts:
        return []
    # verbose=False: long texts are cut into windows later, so the max-length warning is noise.
    return tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]


def tokenize_stream(blocks: Sequence[str], tokenizer: Any) -> torch.Tensor:
    """One 1-D LongTensor: the blocks' tokens back to back (blocks carry their own separators)."""
    return torch.tensor(list(chain.from_iterable(tokenize(blocks, tokenizer))), dtype=torch.long)


def count_predicted_bytes(ids: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    """UTF-8 bytes of the text decoded from each row's tokens after the first (the predicted ones)."""
    texts = tokenizer.batch_decode(ids[:, 1:].tolist(), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return torch.tensor([len(text.encode("utf-8")) for text in texts], dtype=torch.long)


def make_windows(text_ids: torch.Tensor, tokenizer: Any) -> TokenWindows:
    """[n, n_text] text tokens -> TokenWindows with BOS (if any) in front and byte counts."""
    bos = bos_ids(tokenizer)
    if bos:
        text_ids = torch.cat([torch.full((text_ids.shape[0], 1), bos[0], dtype=torch.long), text_ids], dim=1)
    ids = text_ids.long().contiguous()
    return TokenWindows(ids=ids, n_bytes=count_predicted_bytes(ids, tokenizer))


def _cut_stream(stream: torch.Tensor, n_text: int) -> torch.Tensor:
    """Consecutive non-overlapping [n, n_text] rows of the stream; the remainder is dropped."""
    n_windows = stream.numel() // n_text
    return stream[: n_windows * n_text].view(n_windows, n_text)


def _too_few(name: str, available: int, seqlen: int, asked: int, hint: str) -> DataError:
    return DataError(f"{name} gives {available} windows of {seqlen} tokens; asked for {asked} ({hint})")


def calibration_windows(
    blocks: Sequence[str],
    tokenizer: Any,
    nsamples: int | None,
    seqlen: int,
    seed: int,
    *,
    name: str = "calibration text",
    hint: str = "lower data.nsamples or data.seqlen",
) -> TokenWindows:
    """`nsamples` windows (None: every one) drawn without replacement (seeded) from the blocks'
    non-overlapping windows.

    Origin of a row: {"window": k, "offset": first text token}: the k-th window of the blocks' token
    stream (blocks back to back), which starts at text token k * (seqlen - BOS) of that stream.
    """
    n_text = text_tokens_per_window(tokenizer, seqlen)
    rows = _cut_stream(tokenize_stream(blocks, tokenizer), n_text)
    nsamples = rows.shape[0] if nsamples is None else nsamples
    if rows.shape[0] < max(nsamples, 1):
        raise _too_few(name, rows.shape[0], seqlen, max(nsamples, 1), hint)
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(rows.shape[0], generator=generator)[:nsamples]
    windows = make_windows(rows[picked], tokenizer)
    windows.origins = [{"window": int(k), "offset": int(k) * n_text} for k in picked]
    return windows


def evaluation_windows(
    blocks: Sequence[str],
    tokenizer: Any,
    n_windows: int,
    seqlen: int,
    *,
    name: str = "evaluation text",
) -> TokenWindows:
    """The first `n_windows` consecutive non-overlapping windows of the blocks' token stream."""
    return _first_windows(tokenize_stream(blocks, tokenizer), tokenizer, n_windows, seqlen, name)


def _first_windows(stream: torch.Tensor, tokenizer: Any, n_windows: int, seqlen: int, name: str) -> TokenWindows:
    rows = _cut_stream(stream, text_tokens_per_window(tokenizer, seqlen))
    if rows.shape[0] < n_windows:
        raise _too_few(name, rows.shape[0], seqlen, n_windows, "lower data.eval_windows or data.eval_seqlen")
    return make_windows(rows[:n_windows], tokenizer)


def calibration_windows_from_documents(
    documents: Iterable[str | Mapping[str, Any]],
    tokenizer: Any,
    nsamples: int,
    seqlen: int,
    seed: int,
    *,
    name: str = "calibration documents",
    progress: bool = False,
) -> TokenWindows:
    """mC4 style: one random window from each document longer than a window, until `nsamples`.

    A document is a text or a record with a "text" field (an mC4 row). Documents are read lazily, so a
    stream stops being read once enough windows are found; shorter ones are skipped. Origin of a row:
    {"document": index of the document among those read (a record's own "document" field when it has
    one), "offset": first text token of the window in the document's tokens} plus the record's "id",
    "url" and "timestamp" when it has them. `progress` shows documents read and windows found (tqdm;
    drawn only on a terminal).
    """
    n_text = text_tokens_per_window(tokenizer, seqlen)
    generator = torch.Generator().manual_seed(seed)
    rows: list[torch.Tensor] = []
    origins: list[dict[str, Any]] = []
    with tqdm(desc=name, unit="doc", disable=None if progress else True, leave=False) as bar:
        for index, doc in enumerate(documents):
            bar.update(1)
            text = doc if isinstance(doc, str) else doc["text"]
            ids = tokenize([text], tokenizer)[0]
            if len(ids) <= n_text:
                continue
            start = int(torch.randint(0, len(ids) - n_text + 1, (1,), generator=generator))
            rows.append(torch.tensor(ids[start : start + n_text], dtype=torch.long))
            origins.append(_document_origin(doc, index, start))
            bar.set_postfix_str(f"{len(rows)}/{nsamples} windows", refresh=False)
            if len(rows) == nsamples:
                windows = make_windows(torch.stack(rows), tokenizer)
                windows.origins = origins
                return windows
    raise DataError(
        f"{name} hold only {len(rows)} documents longer than {n_text} tokens; "
        f"asked for {nsamples} (lower data.nsamples or data.seqlen)"
    )


_RECORD_FIELDS = ("id", "url", "timestamp")  # what identifies a streamed document, when the record has it


def _document_origin(doc: str | Mapping[str, Any], index: int, offset: int) -> dict[str, Any]:
    if isinstance(doc, str):
        return {"document": index, "offset": offset}
    origin = {"document": doc.get("document", index), "offset": offset}
    origin.update({key: _plain(doc[key]) for key in _RECORD_FIELDS if doc.get(key) is not None})
    return origin


def _plain(value: Any) -> Any:
    """JSON-ready: strings and numbers stay, anything else (e.g. a datetime) becomes its str()."""
    return value if isinstance(value, str | int | float | bool) else str(value)


def evaluation_windows_from_documents(
    documents: Iterable[str],
    tokenizer: Any,
    n_windows: int,
    seqlen: int,
    *,
    name: str = "evaluation documents",
) -> TokenWindows:
    """Documents joined by blank lines, read until `n_windows` windows fill; then as evaluation_windows."""
    needed = n_windows * text_tokens_per_window(tokenizer, seqlen)
    pieces: list[list[int]] = []
    total = 0
    for doc in documents:
        pieces.extend(tokenize([doc + "\n\n"], tokenizer))
        total += len(pieces[-1])
        if total >= needed:
            break
    stream = torch.tensor(list(chain.from_iterable(pieces)), dtype=torch.long)
    return _first_windows(stream, tokenizer, n_windows, seqlen, name)


def load_token_file(path: str | Path, seqlen: int | None = None, vocab_size: int | None = None) -> TokenWindows:
    """Windows stored as a [n, seqlen] integer tensor in .pt (torch.save) or .npy, used as they are.

    No BOS is added and the text is unknown, so n_bytes is all zeros (no bits per byte for these).
    `seqlen` / `vocab_size`, when given, are checked against the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"token file {path} does not exist")
    ids = _read_token_tensor(path)
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise DataError(f"token file {path} has shape {list(ids.shape)}; expected [n, seqlen] with n, seqlen >= 1")
    if seqlen is not None and ids.shape[1] != seqlen:
        raise DataError(
            f"token file {path} holds windows of {ids.shape[1]} tokens but data.seqlen is {seqlen} "
            f"(set data.seqlen={ids.shape[1]})"
        )
    ids = ids.long()
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or (vocab_size is not None and high >= vocab_size):
        bound = vocab_size if vocab_size is not None else "vocab"
        raise DataError(f"token file {path} has ids in [{low}, {high}], outside [0, {bound}): from another tokenizer?")
    return TokenWindows(ids=ids.contiguous(), n_bytes=torch.zeros(ids.shape[0], dtype=torch.long))


# What torch.load(weights_only=True) names when it refuses a pickled object (its message explains at length).
_WEIGHTS_ONLY_REFUSAL = (
    re.compile(r"Unsupported global: GLOBAL (\S+)"),
    re.compile(r"WeightsUnpickler error: ([^.\n]+)"),
)


def _read_token_tensor(path: Path) -> torch.Tensor:
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".npy"):
        raise DataError(f"token file {path}: unsupported extension '{path.suffix}'; use .pt or .npy")
    try:
        data = torch.load(path, weights_only=True) if suffix == ".pt" else np.load(path, allow_pickle=False)
    except Exception as err:  # corrupt files raise pickle, zip, value or OS errors alike
        pickled = next(filter(None, (pattern.search(str(err)) for pattern in _WEIGHTS_ONLY_REFUSAL)), None)
        if pickled:
            raise DataError(
                f"token file {path} holds pickled Python objects ({pickled.group(1)}), "
                "which are not loaded: "
                f"save the token ids alone, torch.save(ids, '{path.name}')"
            ) from None
        detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise DataError(f"token file {path} cannot be read ({type(err).__name__}: {detail})") from err
    if isinstance(data, np.ndarray):
        if not np.issubdtype(data.dtype, np.integer):
            raise DataError(f"token file {path} holds {data.dtype} values; token ids must be integers")
        return torch.from_numpy(data.astype(np.int64))
    if not isinstance(data, torch.Tensor):
        raise DataError(f"token file {path} holds a {type(data).__name__}, not a tensor; {_TOKEN_FILE_CONTENT}")
    kind = _unusual_tensor_kind(data)
    if kind:  # min(), max() and indexing below would fail on it deep inside torch
        raise DataError(f"token file {path} holds a {kind} tensor; {_TOKEN_FILE_CONTENT}")
    if data.dtype not in _INTEGER_DTYPES:
        raise DataError(f"token file {path} holds {data.dtype} values; token ids must be integers")
    return data


def _unusual_tensor_kind(data: torch.Tensor) -> str | None:
    """'sparse_coo', 'nested', 'meta', ... for a tensor that is not a plain dense one, else None."""
    if data.layout != torch.strided:
        return str(data.layout).removeprefix("torch.")
    if data.is_nested:
        return "nested"
    if data.is_meta:
        return "meta (shape only, no values)"
    if data.is_quantized:
        return "quantized"
    return None
