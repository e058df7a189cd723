"""A user's own lm-eval task folder for the tests: one multiple-choice task over a local JSON lines file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

Question = tuple[str, list[str], int]  # (question, choices, index of the right one)


def write_quiz_task(
    folder: Path, task: str, questions: Sequence[Question], function: str | None = None, version: str = "1.0"
) -> Path:
    """`folder` (made) holding items.jsonl and `<task>.yaml`; `function`: a `!function` process_docs."""
    folder.mkdir(parents=True)
    data = folder / "items.jsonl"
    data.write_text("".join(json.dumps({"q": q, "choices": c, "label": label}) + "\n" for q, c, label in questions))
    process = f"process_docs: !function {function}\n" if function else ""
    (folder / f"{task}.yaml").write_text(
        f"task: {task}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        f"{process}"
        "output_type: multiple_choice\n"
        "test_split: test\n"
        "doc_to_text: q\n"
        "doc_to_choice: choices\n"
        "doc_to_target: label\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        f"metadata:\n  version: {version}\n"
    )
    return folder
