"""Rendering shared by the compare and analyze reports: number formatting, Markdown tables, the HTML
page made from a report's Markdown, figure file names (slugs), sizes and saving, legends, and the
projections the figures draw bold.

Reports fit the page: a figure is at most FIGURE_MAX_PX wide at its dpi (its layout wraps panels
onto rows to stay inside), and the page's CSS shrinks any image to the width of the window."""

from __future__ import annotations

import base64
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


FIGURE_DPI = 110
FIGURE_MAX_PX = 1200  # a figure's widest, in pixels: the page's width
FIGURE_MAX_WIDTH = FIGURE_MAX_PX / FIGURE_DPI  # the same in inches, matplotlib's unit
PANELS_PER_ROW = 4

STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:0 auto;padding:0 1em}"
    "img{max-width:100%;height:auto}"
    "table{display:block;max-width:100%;overflow-x:auto;border-collapse:collapse}"
    "td,th{padding:2px 8px;text-align:right}"
)
_IMAGE_SOURCE = re.compile(r'(<img [^>]*src=")([^"]+)(")')


def html_document(markdown_text: str, folder: Path) -> str:
    """A report's Markdown as one self-contained HTML page: converted by the `markdown` package (tables
    included), raw HTML in the text shown as text, and every image it names under `folder` embedded."""
    import markdown

    converter = markdown.Markdown(extensions=["tables"])
    converter.preprocessors.deregister("html_block")  # text such as '<first path>' is text, not a tag
    converter.inlinePatterns.deregister("html")
    body = converter.convert(markdown_text)

    def embed(match: re.Match[str]) -> str:
        path = folder / html.unescape(match.group(2))
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f"{match.group(1)}data:image/png;base64,{data}{match.group(3)}"

    head = f"<head><meta charset='utf-8'><style>{STYLE}</style></head>"
    return f"<!doctype html><html>{head}<body>{_IMAGE_SOURCE.sub(embed, body)}</body></html>"


def slug(setting: str) -> str:
    """A setting as a file-name part: 'wanda unstructured s=0.5' -> 'wanda_unstructured_s_0_5'."""
    return "".join(c if c.isalnum() else "_" for c in setting).strip("_")


def figure_width(inches: float) -> float:
    """A figure's width in inches, capped at the page's width."""
    return min(inches, FIGURE_MAX_WIDTH)


def panel_grid(panels: int, per_row: int = PANELS_PER_ROW) -> tuple[int, int]:
    """(rows, columns) that hold `panels` panels, at most `per_row` to a row."""
    columns = max(1, min(per_row, panels))
    return math.ceil(panels / columns), columns


def legend_once(ax: Any, **options: Any) -> None:
    """A legend with one entry per distinct label (the first artist drawn under it)."""
    handles, labels = ax.get_legend_handles_labels()
    first: dict[str, Any] = {}
    for handle, label in zip(handles, labels, strict=True):
        first.setdefault(label, handle)
    ax.legend(list(first.values()), list(first), **options)


def save_figure(fig: Any, path: Path) -> Path:
    """Write a matplotlib figure as PNG, at most FIGURE_MAX_PX wide (a wider figure gets a lower dpi),
    and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=min(FIGURE_DPI, FIGURE_MAX_PX / fig.get_figwidth()))
    plt.close(fig)
    return path
