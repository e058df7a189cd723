"""Rendering shared by the compare and analyze reports: number formatting, Markdown and HTML tables,
figure file names (slugs) and saving, and the projections the figures draw bold."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

HIGHLIGHT = ("o_proj", "down_proj")  # drawn bold: the projections the study finds least consistent


def fmt(value: float, digits: int = 3) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def inline_html(text: str) -> str:
    """Escaped text with the report's inline Markdown as HTML: **bold** and `code`."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str, tag: str) -> str:
        return f"<{tag}>{inline_html(text)}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    lines = "".join("<tr>" + "".join(cell(str(c), "td") for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{lines}</table>"


def slug(setting: str) -> str:
    """A setting as a file-name part: 'wanda unstructured s=0.5' -> 'wanda_unstructured_s_0_5'."""
    return "".join(c if c.isalnum() else "_" for c in setting).strip("_")


def save_figure(fig: Any, path: Path) -> Path:
    """Write a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
