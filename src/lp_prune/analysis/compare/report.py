"""Markdown and self-contained HTML reports of a comparison, plus a JSON dump of its tables."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from lp_prune.analysis.compare.findings import Finding
from lp_prune.analysis.compare.recipes import RecipeRow, recipe_table, recipe_verdicts
from lp_prune.analysis.compare.tables import Comparison, best_per_column
from lp_prune.analysis.render import fmt, html_document, markdown_table
from lp_prune.storage.files import atomic_write_text, write_json


def perplexity_rows(
    matrix: dict[str, dict[str, float]],
    higher_is_better: bool = False,
    stderr: dict[str, dict[str, float]] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a calibration-language table; the best calibration language per column in bold;
    `stderr` (same shape) adds "± stderr" to the cells that have one."""
    cols = sorted({lang for values in matrix.values() for lang in values})
    best = best_per_column(matrix, higher_is_better)
    rows = []
    for row, values in matrix.items():
        cells = []
        for col in cols:
            text = fmt(values.get(col, math.nan), 2)
            if stderr and stderr.get(row, {}).get(col) is not None:
                text += f" ± {stderr[row][col]:.2f}"
            cells.append(f"**{text}**" if best.get(col) == row else text)
        rows.append([row, *cells])
    return ["calibration \\ eval", *cols], rows


def iou_rows(iou: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Mean IoU per projection (over pairs and layers), and for the first and last layers; beside them
    the same-language floor (mean over layers) where two draws of a language exist."""
    floor = iou.get("floor_projection_layer") or {}
    header = ["projection", "mean IoU", "first layer", "last layer"] + (["same-language floor"] if floor else [])
    rows = []
    for proj, per_layer in iou["projection_layer"].items():
        row = [proj, fmt(sum(per_layer) / len(per_layer)), fmt(per_layer[0]), fmt(per_layer[-1])]
        row += [fmt(statistics.fmean(floor[proj])) if floor.get(proj) else "-"] if floor else []
        rows.append(row)
    rows.append(["random masks (chance)", fmt(iou["chance"]), "", "", *([""] if floor else [])])
    return header, rows


def disagreement_rows(table: dict[str, dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    header = ["projection", "disputed share", "CV across rows", "CV across columns"]
    return header, [[proj, fmt(v["rate"]), fmt(v["row_cv"]), fmt(v["col_cv"])] for proj, v in table.items()]


def sections(result: Comparison) -> list[tuple[str, list[tuple[str, list[str], list[list[str]]]]]]:
    """(setting, [(table title, header, rows)]) in report order."""
    out = []
    for setting, matrix in result.perplexity.items():
        tables = [
            (
                "Perplexity (rows: calibration language; bold: best per evaluation language)",
                *perplexity_rows(matrix),
            )
        ]
        if result.accuracy.get(setting):
            read = sorted(set(result.metrics.get(setting, {}).values()) - {"acc"})
            scores = "acc" + "".join(
                f"; {metric} for {', '.join(t for t, m in result.metrics[setting].items() if m == metric)}"
                for metric in read
            )
            title = f"Downstream score ± stderr ({scores}; rows: calibration recipe; bold: best per task)"
            rows = perplexity_rows(result.accuracy[setting], True, result.accuracy_stderr.get(setting))
            tables.append((title, *rows))
        if result.iou[setting]["pairs"]:
            tables.append(("Mask IoU between calibration languages", *iou_rows(result.iou[setting])))
        if result.disagreement.get(setting):
            title = (
                "Where the masks disagree (pruned by some calibration languages, not all; CV: which side carries it)"
            )
            tables.append((title, *disagreement_rows(result.disagreement[setting])))
        out.append((setting, tables))
    return out


def findings_blocks(
    findings: dict[str, list[Finding]], recipes: dict[str, list[RecipeRow]]
) -> list[tuple[str, list[str], tuple[list[str], list[list[str]]] | None]]:
    """(setting, verdict lines, recipe table or None) for the report's opening section."""
    blocks = []
    for setting in dict.fromkeys([*findings, *recipes]):
        lines = [f"**{f.claim} — {f.verdict}.** {f.statement} {f.evidence}" for f in findings.get(setting, [])]
        rows = recipes.get(setting)
        lines += recipe_verdicts(rows) if rows else []
        blocks.append((setting, lines, recipe_table(rows) if rows else None))
    return blocks


def write_reports(
    result: Comparison,
    figures: dict[str, Path],
    out: Path,
    findings: dict[str, list[Finding]] | None = None,
    recipes: dict[str, list[RecipeRow]] | None = None,
) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "report.md", "html": out / "report.html", "json": out / "tables.json"}
    blocks = findings_blocks(findings or {}, recipes or {})
    markdown_text = _markdown(result, figures, out, blocks)
    atomic_write_text(paths["markdown"], markdown_text)
    atomic_write_text(paths["html"], html_document(markdown_text, out))
    write_json(
        paths["json"],
        {
            "model": result.model,
            "runs": [str(r.path) for r in result.runs],
            "perplexity": result.perplexity,
            "accuracy": result.accuracy,
            "iou": result.iou,
            "disagreement": result.disagreement,
            "layer_metrics": result.layer_metrics,
            "accuracy_stderr": result.accuracy_stderr,
            "metrics": result.metrics,
            "findings": {setting: [f.to_dict() for f in found] for setting, found in (findings or {}).items()},
            "recipes": {setting: [r.to_dict() for r in rows] for setting, rows in (recipes or {}).items()},
        },
    )
    return paths


def _markdown(result: Comparison, figures: dict[str, Path], out: Path, blocks: list | None = None) -> str:
    parts = [f"# Comparison: {result.model}", "", f"{len(result.runs)} runs.", ""]
    if blocks:
        parts += ["## The study's findings on these runs", ""]
    for setting, lines, table in blocks or []:
        parts += [f"### {setting}", "", *[f"- {line}" for line in lines], ""]
        parts += [markdown_table(*table), ""] if table else []
    for setting, tables in sections(result):
        parts += [f"## {setting}", ""]
        for title, header, rows in tables:
            parts += [f"### {title}", "", markdown_table(header, rows), ""]
        for name, path in figures.items():
            if name.endswith(setting):
                parts += [f"![{name}]({path.relative_to(out)})", ""]
    return "\n".join(parts)
