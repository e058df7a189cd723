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


def iou_per_layer(projection_layer: dict[str, list[float]], chance: float, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for proj, values in projection_layer.items():
        style = {"linewidth": 2.5} if proj in HIGHLIGHT else {"linewidth": 1, "alpha": 0.6}
        ax.plot(range(len(values)), values, marker="o", markersize=3, label=proj, **style)
    ax.axhline(chance, color="grey", linestyle="--", label=f"random masks ({chance:.3f})")
    ax.set_xlabel("layer")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mask IoU (mean over language pairs)")
    ax.set_title(f"{title}\nmask IoU between calibration languages", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)


def iou_language_heatmaps(iou: dict, title: str, path: Path) -> Path:
    languages = iou["languages"]
    fig, axes = plt.subplots(1, len(HIGHLIGHT), figsize=(4.5 * len(HIGHLIGHT), 4))
    for ax, proj in zip(axes, HIGHLIGHT, strict=True):
        grid = [[1.0 if a == b else _pair_value(iou, a, b, proj) for b in languages] for a in languages]
        image = ax.imshow(grid, vmin=iou["chance"], vmax=1.0, cmap="magma")
        ax.set_xticks(range(len(languages)), languages)
        ax.set_yticks(range(len(languages)), languages)
        for i in range(len(languages)):
            for j in range(len(languages)):
                color = _text_color(image, grid[i][j])
                ax.text(j, i, f"{grid[i][j]:.2f}", ha="center", va="center", fontsize=7, color=color)
        ax.set_title(f"{proj} (mean over layers)", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(f"{title}: mask IoU by calibration language pair", fontsize=9)
    return save_figure(fig, path)


def _pair_value(iou: dict, a: str, b: str, proj: str) -> float:
    pair = iou["pair_projection"].get(f"{a}-{b}") or iou["pair_projection"].get(f"{b}-{a}") or {}
    return pair.get(proj, math.nan)


def layer_metric_lines(per_proj: dict[str, dict[str, list[float]]], metric: str, title: str, path: Path) -> Path:
    """One panel per projection (at most four to a row), one line per calibration recipe."""
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
    fig.suptitle(f"{title}: local {metric} per layer by calibration language", fontsize=9)
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
            figures[f"iou per layer {setting}"] = iou_per_layer(
                iou["projection_layer"], iou["chance"], setting, out / f"iou_layers_{name}.png"
            )
            figures[f"iou languages {setting}"] = iou_language_heatmaps(iou, setting, out / f"iou_pairs_{name}.png")
        for metric, per_proj in result.layer_metrics[setting].items():
            figures[f"{metric} {setting}"] = layer_metric_lines(per_proj, metric, setting, out / f"{metric}_{name}.png")
    return figures
