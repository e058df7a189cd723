"""Figures of a comparison (PNG, matplotlib without a display), each at most a page wide."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from lp_prune.analysis.compare.tables import Comparison, best_per_column
from lp_prune.analysis.render import HIGHLIGHT, figure_width, panel_grid, save_figure, slug

FLOOR_LABEL = "same-language floor (IoU of two draws of one language)"
OWN_INPUTS = "measured on each run's own calibration inputs; not comparable across lines"


def _text_color(image, value: float) -> str:
    """Black on light cells, white on dark ones: the label stays readable wherever it lands."""
    if not math.isfinite(value):
        return "black"
    red, green, blue, _ = image.cmap(image.norm(value))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def perplexity_heatmap(matrix: dict[str, dict[str, float]], title: str, path: Path) -> Path:
    rows = list(matrix)
    cols = sorted({lang for values in matrix.values() for lang in values})
    values = [[math.log(matrix[r].get(c, math.nan)) for c in cols] for r in rows]
    best = best_per_column(matrix)
    fig, ax = plt.subplots(figsize=(figure_width(1.1 * len(cols) + 2), 0.6 * len(rows) + 1.5))
    image = ax.imshow(values, cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("evaluation language")
    ax.set_ylabel("calibration language")
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            mark = best.get(col) == row
            text = f"{matrix[row].get(col, math.nan):.1f}" + ("*" if mark else "")
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color=_text_color(image, values[i][j]),
                fontweight="bold" if mark else "normal",
            )
    fig.colorbar(image, ax=ax, label="log perplexity")
    ax.set_title(f"{title}\nperplexity (* = best calibration language per column)", fontsize=9)
    return save_figure(fig, path)


def iou_per_layer(iou: dict, title: str, path: Path) -> Path:
    """Cross-language IoU per layer and projection, with chance and, where two draws of a language
    exist, the same-language floor of each projection (dotted, in its colour)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    floor = iou.get("floor_projection_layer") or {}
    for proj, values in iou["projection_layer"].items():
        style = {"linewidth": 2.5} if proj in HIGHLIGHT else {"linewidth": 1, "alpha": 0.6}
        (line,) = ax.plot(range(len(values)), values, marker="o", markersize=3, label=proj, **style)
        if floor.get(proj):
            ax.plot(range(len(floor[proj])), floor[proj], linestyle=":", color=line.get_color(), **style)
    chance = iou["chance"]
    ax.axhline(chance, color="grey", linestyle="--", label=f"random masks ({chance:.3f})")
    if floor:
        ax.plot([], [], linestyle=":", color="black", label=FLOOR_LABEL)
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mask IoU (mean over language pairs)")
    ax.set_title(f"{title}\nmask IoU between calibration languages", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def iou_language_heatmaps(iou: dict, title: str, path: Path) -> Path:
    """IoU per calibration-language pair for the study's projections; the diagonal holds the
    same-language floor where two draws of the language exist. One colour scale for both panels,
    fitted to the values shown."""
    languages = iou["languages"]
    grids = {proj: _pair_grid(iou, languages, proj) for proj in HIGHLIGHT}
    low, high = _value_range([v for grid in grids.values() for row in grid for v in row])
    fig, axes = plt.subplots(1, len(HIGHLIGHT), figsize=(4.5 * len(HIGHLIGHT) + 0.5, 4.3))
    for ax, (proj, grid) in zip(axes, grids.items(), strict=True):
        image = ax.imshow(grid, vmin=low, vmax=high, cmap="magma")
        ax.set_xticks(range(len(languages)), languages)
        ax.set_yticks(range(len(languages)), languages)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if math.isfinite(value):
                    color = _text_color(image, value)
                    ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=7, color=color)
        ax.set_title(f"{proj} (mean over layers)", fontsize=9)
    fig.colorbar(image, ax=axes[-1], fraction=0.046, label="mask IoU")
    diagonal = "diagonal: same-language floor" if iou.get("floor") else "diagonal empty: no two draws of a language"
    scale = f"colour scale fitted to the values shown: {low:.3f}-{high:.3f} (chance {iou['chance']:.3f})"
    fig.suptitle(f"{title}: mask IoU by calibration language pair ({diagonal})\n{scale}", fontsize=9)
    return save_figure(fig, path)


def _pair_grid(iou: dict, languages: list[str], proj: str) -> list[list[float]]:
    """The pairs' IoU; on the diagonal the language's floor (nan without one)."""
    floor = iou.get("floor") or {}
    return [
        [floor.get(a, {}).get(proj, math.nan) if a == b else _pair_value(iou, a, b, proj) for b in languages]
        for a in languages
    ]


def _value_range(values: list[float]) -> tuple[float, float]:
    """The lowest and highest finite value, a little apart when they are one value (or none)."""
    finite = [v for v in values if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    return (low - 0.005, high + 0.005) if high - low < 1e-9 else (low, high)


def _pair_value(iou: dict, a: str, b: str, proj: str) -> float:
    pair = iou["pair_projection"].get(f"{a}-{b}") or iou["pair_projection"].get(f"{b}-{a}") or {}
    return pair.get(proj, math.nan)


def layer_metric_lines(per_proj: dict[str, dict[str, list[float]]], metric: str, title: str, path: Path) -> Path:
    """One panel per projection (at most four to a row), one line per calibration recipe. Each line is
    measured on its own run's calibration inputs, so the lines are not on common inputs."""
    projections = list(per_proj)
    rows, cols = panel_grid(len(projections))
    size = (figure_width(2.7 * cols), 2.6 * rows + 0.6)
    fig, axes = plt.subplots(rows, cols, figsize=size, sharey=True, squeeze=False)
    for ax, proj in zip(axes.flat, projections, strict=False):
        for lang, values in per_proj[proj].items():
            ax.plot(range(len(values)), values, label=lang, linewidth=1)
        ax.set_title(proj, fontsize=9)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(projections) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel(metric)
    axes.flat[len(projections) - 1].legend(fontsize=7, title="calibration", title_fontsize=7)
    fig.suptitle(f"{title}: local {metric} per layer by calibration language\n({OWN_INPUTS})", fontsize=9)
    return save_figure(fig, path)


def comparison_figures(result: Comparison, out: Path) -> dict[str, Path]:
    """All figures, keyed by a short name."""
    figures = {}
    for setting in result.perplexity:
        name = slug(setting)
        if any(result.perplexity[setting].values()):  # runs with eval.perplexity false have no values to draw
            figures[f"perplexity {setting}"] = perplexity_heatmap(
                result.perplexity[setting], setting, out / f"perplexity_{name}.png"
            )
        iou = result.iou[setting]
        if iou["pairs"]:
            figures[f"iou per layer {setting}"] = iou_per_layer(iou, setting, out / f"iou_layers_{name}.png")
            figures[f"iou languages {setting}"] = iou_language_heatmaps(iou, setting, out / f"iou_pairs_{name}.png")
        for metric, per_proj in result.layer_metrics[setting].items():
            figures[f"{metric} {setting}"] = layer_metric_lines(per_proj, metric, setting, out / f"{metric}_{name}.png")
    return figures
