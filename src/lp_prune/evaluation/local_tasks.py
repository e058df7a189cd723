"""lm-eval multiple-choice tasks that lp_prune writes itself (the proxy, the probe): one JSON-lines
file of items and one task YAML per task, in a cache folder that lm-eval reads as an include path.

Items are JSON objects with the prompt under `text_field`, `choices` and `label`; the task scores each
choice's log-likelihood after the prompt (acc, and lm-eval's byte-normalised acc_norm).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lp_prune.errors import ConfigError
from lp_prune.languages import LANGUAGE_TABLE
from lp_prune.storage.cache_lock import cache_folder, cache_lock
from lp_prune.storage.files import atomic_write_text


def multiple_choice_yaml(
    name: str, tag: str, data_file: Path, text_field: str, lang: str, header: str, metadata: Mapping[str, Any]
) -> str:
    """The task YAML; `header` is its first comment line, `metadata` lm-eval's metadata block."""
    delimiter = " " if LANGUAGE_TABLE[lang].word_spaces else ""
    meta = "".join(f"  {key}: {value}\n" for key, value in metadata.items())
    return f"""# {header}
task: {name}
tag: [{tag}]
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(data_file))}
output_type: multiple_choice
test_split: test
fewshot_split: test
doc_to_text: {text_field}
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
{meta}"""


def write_task_files(folder: Path, tasks: Iterable[tuple[str, Iterable[Any], str]], what: str) -> Path:
    """Write `<name>.jsonl` (one JSON object per item) and `<name>.yaml` for each (name, items, yaml);
    a ConfigError naming the cache when it cannot be written (lm-eval reads tasks from files only).
    Under the folder's cache lock: runs started together write it once, the others find it written."""
    try:
        cache_folder(folder)
        with cache_lock(folder, what):
            for name, items, yaml in tasks:
                lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
                write_if_changed(folder / f"{name}.jsonl", lines)
                write_if_changed(folder / f"{name}.yaml", yaml)
    except OSError as error:
        raise ConfigError(
            f"the {what} are written into the cache {folder}, which cannot be written "
            f"({error.strerror or error}); set LP_PRUNE_CACHE to a writable folder"
        ) from None
    return folder


def write_if_changed(path: Path, text: str) -> None:
    # Rewriting identical files would change their mtime and make datasets rebuild its cache.
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
