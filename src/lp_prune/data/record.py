"""The calibration record: which text every calibration window came from, and its token ids.

A run writes two files into its directory (`write_calibration_files`):

- ``calibration_tokens.pt``: the calibration windows exactly as the model saw them, a ``[n, seqlen]``
  int64 tensor (``torch.save``), BOS first when the tokenizer has one. ``--data.source tokens
  --data.token_file <run>/calibration_tokens.pt`` reruns the same calibration set; any other tool can
  read it with ``torch.load``.
- ``calibration.json`` (``calibration_record``)::

      {"format": "lp_prune-calibration/1", "token_file": "calibration_tokens.pt",
       "shape": [n, seqlen], "seed": 0, "bos_token_id": 2, "calibration_language": "en",
       "sources": {"en": {"source": "mc4", "dataset": "allenai/c4", "config": "en-multi",
                          "split": "train", "revision": "<commit or null>",
                          "shuffle_seed": 0, "shuffle_buffer": 10000}},
       "windows": [{"row": 0, "language": "en", "document": 17, "offset": 312,
                    "url": "...", "timestamp": "..."}, ...]}

  One ``windows`` entry per token-file row. Per source: mc4 rows name the document (its index in the
  seeded, shuffled stream, and its url / timestamp / id when the record has them) and ``offset``, the
  window's first text token in the document's tokens. packaged and files rows name ``window``, the
  k-th non-overlapping window of the language's calibration text (its calibration blocks back to
  back), and ``offset`` = k x (seqlen - BOS) tokens into it. tokens rows name ``file_row``, the row
  of the token file they were read from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from lp_prune.config import DataConfig
from lp_prune.data.windows import TokenWindows
from lp_prune.storage.files import atomic_output, to_jsonable, write_json
from lp_prune.tracking.run_dir import CALIBRATION_RECORD_FILE, CALIBRATION_TOKENS_FILE

RECORD_FORMAT = "lp_prune-calibration/1"


def calibration_record(
    config: DataConfig,
    sources: Mapping[str, Mapping[str, Any]],
    windows: TokenWindows,
    languages: Sequence[str],
    bos: Sequence[int] = (),
) -> dict[str, Any]:
    """The JSON-ready record of a calibration set: where each row of `windows` came from.

    sources: per language, where its text comes from (e.g. MC4Stream.describe()); languages: the
    language of each row; bos: the BOS id every row starts with ([] when the tokenizer has none).
    """
    if len(languages) != len(windows) or (windows.origins and len(windows.origins) != len(windows)):
        raise ValueError(f"{len(windows)} windows but {len(languages)} languages and {len(windows.origins)} origins")
    origins = windows.origins or [{} for _ in range(len(windows))]
    rows = [
        {"row": row, "language": lang, **origin}
        for row, (lang, origin) in enumerate(zip(languages, origins, strict=True))
    ]
    return to_jsonable(
        {
            "format": RECORD_FORMAT,
            "token_file": CALIBRATION_TOKENS_FILE,
            "shape": list(windows.ids.shape),
            "seed": config.seed,
            "bos_token_id": bos[0] if bos else None,
            "calibration_language": config.recipe().spec,
            "sources": {lang: dict(source) for lang, source in sources.items()},
            "windows": rows,
        }
    )


def write_calibration_files(
    run_root: str | os.PathLike[str], windows: TokenWindows, record: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write the token file and the record into the run directory, each atomically; return their paths."""
    root = Path(run_root)
    tokens_path = root / CALIBRATION_TOKENS_FILE
    record_path = root / CALIBRATION_RECORD_FILE
    with atomic_output(tokens_path) as tmp:
        # clone: a slice would save its whole storage; int64 so any vocabulary fits
        torch.save(windows.ids.detach().to(torch.int64).clone(), tmp)
    write_json(record_path, record)
    return tokens_path, record_path
