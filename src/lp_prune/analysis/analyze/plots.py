"""Figures of `lp-prune analyze` (PNG, matplotlib without a display), one set per pruning setting, each
at most a page wide. Runs appear under their labels: repeats of one calibration by draw ("en #0")."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from lp_prune.analysis.render import (
    FIGURE_MAX_WIDTH,
    HIGHLIGHT,
    figure_width,
    legend_once,
    panel_grid,
    save_figure,
    slug,
)
from lp_prune.analysis.result import AnalysisResult


def runs_by_setting(result: AnalysisResult) -> dict[str, list[dict[str, Any]]]:
    """The analysed runs (dicts of result.runs) grouped by setting, in order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in result.runs:
        if run["analysed"]:
            groups[run["setting"]].append(run)
    return dict(groups)


def snr_per_layer(result: AnalysisResult, runs: list[dict[str, Any]], title: str, path: Path) -> Path:
    """One panel per evaluation language, one line per calibration language (bold: the same language)."""
    languages = result.languages
    rows, cols = panel_grid(len(languages))
    size = (figure_width(3.3 * cols), 2.8 * rows + 0.4)
    fig, axes = plt.subplots(rows, cols, figsize=size, sharex=True, squeeze=False)
    for ax, lang in zip(axes.flat, languages, strict=False):
        for run in runs:
            values = result.snr_db[run["key"]][lang]
            same = run["calibration_language"] == lang
            ax.plot(
                range(len(values)), values, label=run["label"], linewidth=2.5 if same else 1, alpha=1 if same else 0.7
            )
        ax.set_title(f"evaluated on {lang}", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer", fontsize=8)
        ax.set_ylabel("SNR (dB)", fontsize=8)
    for ax in list(axes.flat)[len(languages) :]:
        ax.axis("off")
    legend_once(axes.flat[0], fontsize=7, title="calibration", title_fontsize=7)
    fig.suptitle(
        f"{title}: cumulative SNR of the hidden states per layer (bold: calibrated on that language)", fontsize=9
    )
    return save_figure(fig, path)


def snr_heatmap(result: AnalysisResult, runs: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Last-layer SNR: calibration language x evaluation language; * marks the best per column."""
    languages = result.languages
    grid = [[result.snr_db[run["key"]][lang][-1] for lang in languages] for run in runs]
    best = [max(range(len(runs)), key=lambda i, j=j: grid[i][j]) for j in range(len(languages))]
    fig, ax = plt.subplots(figsize=(figure_width(1.0 * len(languages) + 2), 0.55 * len(runs) + 1.6))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(languages)), languages)
    ax.set_yticks(range(len(runs)), [run["label"] for run in runs])
    ax.set_xlabel("evaluation language")
    ax.set_ylabel("calibration language")
    for i in range(len(runs)):
        for j in range(len(languages)):
            mark = "*" if best[j] == i else ""
            ax.text(j, i, f"{grid[i][j]:.1f}{mark}", ha="center", va="center", fontsize=8, color="white")
    fig.colorbar(image, ax=ax, label="SNR (dB)")
    ax.set_title(f"{title}\nSNR at the last layer (* = best calibration per evaluation language)", fontsize=9)
    return save_figure(fig, path)


# The panels' quantities: P projects onto the language-specific subspace U_s, I - P onto the agnostic rest.
LSAR_PANEL_TITLES = {
    "specific": "language-specific: ||P e||² / ||P h||²",
    "agnostic": "language-agnostic: ||(I - P) e||² / ||(I - P) h||²",
}


def lsar_errors(result: AnalysisResult, runs: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Relative pruning error in the language-specific subspace and in the agnostic rest, per layer."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, (part, panel_title) in zip(axes, LSAR_PANEL_TITLES.items(), strict=True):
        for run in runs:
            values = result.lsar["runs"][run["key"]]["pooled"][part]
            ax.plot(range(len(values)), values, label=run["label"], linewidth=1.2)
        ax.set_yscale("log")
        ax.set_title(panel_title, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer")
    axes[0].set_ylabel("relative squared error")
    legend_once(axes[1], fontsize=7, title="calibration", title_fontsize=7)
    fig.suptitle(f"{title}: LSAR split of the pruning error (rank {result.lsar['rank']})", fontsize=9)
    return save_figure(fig, path)


def lape_shift_plot(result: AnalysisResult, runs: list[dict[str, Any]], title: str, path: Path) -> Path:
    """Left: mean shift of the LAPE neurons' p on their own language; right: mean |shift| by dense p."""
    lape = result.lape
    neuron_languages = [lang for lang, n in lape["per_language"].items() if n]
    fig, (left, right) = plt.subplots(1, 2, figsize=(FIGURE_MAX_WIDTH, 0.5 * len(runs) + 3))
    grid = [[lape["runs"][run["key"]]["mean_shift"].get(lang, math.nan) for lang in neuron_languages] for run in runs]
    limit = max((abs(v) for row in grid for v in row if not math.isnan(v)), default=1e-3) or 1e-3
    image = left.imshow(grid, cmap="coolwarm", vmin=-limit, vmax=limit, aspect="auto")
    left.set_xticks(
        range(len(neuron_languages)), [f"{lang}\n({lape['per_language'][lang]})" for lang in neuron_languages]
    )
    left.set_yticks(range(len(runs)), [run["label"] for run in runs])
    left.set_xlabel("language of the neurons (count)")
    left.set_ylabel("calibration language")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            left.text(j, i, f"{value:+.3f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=left, label="mean p' - p on own language")
    edges = lape["dense_p_edges"]
    labels = [f"p in [{lo:.2f}, {hi:.2f}]" for lo, hi in itertools.pairwise(edges)]
    width = 0.8 / max(len(runs), 1)
    for k, run in enumerate(runs):
        values = [b["mean_abs_shift"] for b in lape["runs"][run["key"]]["bins"]]
        right.bar([i + k * width for i in range(len(values))], values, width=width, label=run["label"])
    for i in range(len(labels)):  # baseline: all neurons with a dense p in the same range, mean over runs
        baseline = [lape["runs"][run["key"]]["bins"][i]["all_neurons_mean_abs_shift"] for run in runs]
        right.hlines(
            sum(baseline) / len(baseline), i - width / 2, i - width / 2 + 0.8, colors="black", linestyles="--",
            label="all neurons, same p" if i == 0 else None,
        )  # fmt: skip
    right.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, fontsize=8)
    right.set_ylabel("mean |p' - p|")
    right.set_title("language-specific neurons by dense activation probability", fontsize=9)
    legend_once(right, fontsize=7)
    fig.suptitle(f"{title}: LAPE activation probabilities after pruning ({lape['n_neurons']} neurons)", fontsize=9)
    return save_figure(fig, path)


def mask_structure_plot(structure: dict[str, Any], title: str, path: Path) -> Path:
    """Left: share of positions where calibration languages' masks disagree, per layer; right: row vs column
    unevenness (coefficient of variation of the per-row / per-column disputed rate)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(FIGURE_MAX_WIDTH, 3.8))
    for proj, values in structure["projection_layer"].items():
        style = {"linewidth": 2.5} if proj in HIGHLIGHT else {"linewidth": 1, "alpha": 0.7}
        left.plot(range(len(values)), values, marker="o", markersize=3, label=proj, **style)
    left.set_xlabel("layer")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("disputed share of weights")
    left.set_title(f"masks of {', '.join(structure['languages'])} disagree", fontsize=9)
    left.legend(fontsize=7, ncol=2)
    projections = list(structure["projection"])
    rows = [structure["projection"][p]["row_cv"] for p in projections]
    cols = [structure["projection"][p]["col_cv"] for p in projections]
    positions = range(len(projections))
    right.bar([i - 0.2 for i in positions], rows, width=0.4, label="across rows (outputs)")
    right.bar([i + 0.2 for i in positions], cols, width=0.4, label="across columns (inputs)")
    right.set_xticks(list(positions), projections, rotation=30, fontsize=8)
    right.set_ylabel("CV of disputed rate")
    right.set_title("where the disagreement sits", fontsize=9)
    right.legend(fontsize=7)
    fig.suptitle(f"{title}: mask structure across calibration languages", fontsize=9)
    return save_figure(fig, path)


def analysis_figures(result: AnalysisResult, out: Path) -> dict[str, Path]:
    """All figures, keyed by a short name ending in the setting they belong to."""
    figures = {}
    for setting, runs in runs_by_setting(result).items():
        name = slug(setting)
        figures[f"snr per layer {setting}"] = snr_per_layer(result, runs, setting, out / f"snr_layers_{name}.png")
        figures[f"snr last layer {setting}"] = snr_heatmap(result, runs, setting, out / f"snr_last_{name}.png")
        figures[f"lsar error {setting}"] = lsar_errors(result, runs, setting, out / f"lsar_{name}.png")
        figures[f"lape shifts {setting}"] = lape_shift_plot(result, runs, setting, out / f"lape_{name}.png")
    for setting, structure in result.mask_structure.items():
        path = out / f"mask_structure_{slug(setting)}.png"
        figures[f"mask structure {setting}"] = mask_structure_plot(structure, setting, path)
    return figures
