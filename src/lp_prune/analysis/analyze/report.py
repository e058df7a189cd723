"""Markdown and self-contained HTML report section of `lp-prune analyze`, its tables and its JSON."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from lp_prune.analysis.analyze.plots import runs_by_setting
from lp_prune.analysis.compare.findings import analysis_findings
from lp_prune.analysis.render import fmt, html_document, markdown_table
from lp_prune.analysis.result import AnalysisResult
from lp_prune.storage.files import atomic_write_text, write_json

Table = tuple[str, str, list[str], list[list[str]]]  # (key, title, header, rows)
DRAW_NOTE = (
    " Repeats of one calibration are labelled by draw: '#' and the run's data.seed"
    " (with its seed after a dot where the repeats share a data.seed)."
)


def sample_layers(n_layers: int) -> list[int]:
    """First, middle and last layer."""
    return sorted({0, n_layers // 2, n_layers - 1})


def snr_table(result: AnalysisResult, runs: list[dict[str, Any]], layer: int) -> tuple[list[str], list[list[str]]]:
    """SNR (dB) at one layer: calibration rows x evaluation columns, best per column in bold."""
    languages = result.languages
    values = [[result.snr_db[run["key"]][lang][layer] for lang in languages] for run in runs]
    best = [max(range(len(runs)), key=lambda i, j=j: values[i][j]) for j in range(len(languages))]
    rows = [
        [run["label"], *[_bold(fmt(v, 2), best[j] == i) for j, v in enumerate(values[i])]] for i, run in enumerate(runs)
    ]
    return ["calibration \\ eval", *languages], rows


def lsar_table(result: AnalysisResult, runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Relative error in the specific / agnostic parts at sampled layers, and the specific share of the error."""
    first = result.lsar["runs"][runs[0]["key"]]["pooled"]["specific"]
    layers = sample_layers(len(first))
    header = ["calibration"]
    header += [f"specific L{i}" for i in layers] + [f"agnostic L{i}" for i in layers] + ["specific share (mean)"]
    rows = []
    for run in runs:
        pooled = result.lsar["runs"][run["key"]]["pooled"]
        cells = [fmt(pooled["specific"][i], 4) for i in layers] + [fmt(pooled["agnostic"][i], 4) for i in layers]
        rows.append([run["label"], *cells, fmt(_mean(pooled["specific_share"]))])
    return header, rows


def lape_shift_table(result: AnalysisResult, runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Mean p' - p of the LAPE neurons on their own language, per language the neurons belong to."""
    lape = result.lape
    languages = [lang for lang, n in lape["per_language"].items() if n]
    header = ["calibration", *[f"{lang} ({lape['per_language'][lang]})" for lang in languages], "all"]
    rows = []
    for run in runs:
        summary = lape["runs"][run["key"]]
        shifts = [fmt(summary["mean_shift"].get(lang, math.nan), 4) for lang in languages]
        rows.append([run["label"], *shifts, fmt(summary["all"]["mean_shift"], 4)])
    return header, rows


def lape_bins_table(result: AnalysisResult, runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The LAPE neurons' shift by their dense p (thirds), beside all neurons with p in the same range.

    Headers say "abs": a pipe would split a Markdown cell."""
    header = ["calibration", "dense p", "neurons", "mean shift", "mean abs shift", "mean abs shift / p"]
    header.append("all neurons: mean abs shift")
    rows = []
    for run in runs:
        for b in result.lape["runs"][run["key"]]["bins"]:
            cells = [b["mean_shift"], b["mean_abs_shift"], b["mean_rel_abs_shift"], b["all_neurons_mean_abs_shift"]]
            rows.append([run["label"], f"{b['low']:.3f}-{b['high']:.3f}", str(b["n"]), *[fmt(c, 4) for c in cells]])
    return header, rows


def overlap_table(result: AnalysisResult, runs: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Pruned share of the LAPE neurons' weights vs their layers' average, per projection."""
    header = ["calibration", "projection", "own-language neurons", "layer avg", "other neurons", "layer avg"]
    rows = []
    for run in runs:
        for proj, values in result.lape["runs"][run["key"]]["overlap"].items():
            cells = [values.get(k, math.nan) for k in ("own", "own_layer_average", "other", "other_layer_average")]
            rows.append([run["label"], proj, *[fmt(v) for v in cells]])
    return header, rows


def structure_table(structure: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["projection", "disputed", "pairwise differ", "row CV", "column CV", "top-10% rows", "top-10% columns"]
    header += ["LAPE neurons disputed", "all neurons disputed"]
    rows = []
    for proj, values in structure["projection"].items():
        neurons = structure["ffn_neurons"].get(proj, {})
        cells = [values[k] for k in ("rate", "pairwise", "row_cv", "col_cv", "row_top_share", "col_top_share")]
        cells += [neurons.get("language_specific", math.nan), neurons.get("all", math.nan)]
        rows.append([proj, *[fmt(v) for v in cells]])
    return header, rows


def all_tables(result: AnalysisResult) -> list[tuple[str, list[Table]]]:
    """(setting, tables) in report order; the keys double as W&B table names."""
    analysed = runs_by_setting(result)
    out = []
    for setting in dict.fromkeys([*analysed, *result.mask_structure]):
        tables = activation_tables(result, setting, analysed[setting]) if setting in analysed else []
        if setting in result.mask_structure:
            title = "Mask disagreement between calibration languages"
            tables.append((f"masks/{setting}", title, *structure_table(result.mask_structure[setting])))
        out.append((setting, tables))
    return out


def activation_tables(result: AnalysisResult, setting: str, runs: list[dict[str, Any]]) -> list[Table]:
    n_layers = len(result.snr_db[runs[0]["key"]][result.languages[0]])
    tables: list[Table] = [
        (f"snr/L{layer}/{setting}", f"Cumulative SNR (dB) at layer {layer}", *snr_table(result, runs, layer))
        for layer in sample_layers(n_layers)
    ]
    tables.append((f"lsar/{setting}", "LSAR: relative pruning error by subspace", *lsar_table(result, runs)))
    title = "LAPE neurons: mean activation probability shift on their own language (neuron language, count)"
    tables.append((f"lape/{setting}", title, *lape_shift_table(result, runs)))
    title = "LAPE neurons by dense activation probability"
    tables.append((f"lape_bins/{setting}", title, *lape_bins_table(result, runs)))
    title = "LAPE neurons: pruned share of their weights"
    tables.append((f"lape_overlap/{setting}", title, *overlap_table(result, runs)))
    return tables


def findings_text(result: AnalysisResult) -> list[str]:
    """The study's claims C2, C5 and C6 with their verdicts, then the numbers behind them, per setting."""
    lines = [
        f"{setting}: {finding.line()}" for setting, found in analysis_findings(result).items() for finding in found
    ]
    for setting, found in result.findings.items():
        bins = list(zip(*found["lape_bins_mean_abs_shift"].values(), strict=True))
        means = ", ".join(fmt(_mean(list(b)), 4) for b in bins)
        lines.append(f"{setting}: LAPE neurons' mean |p' - p| from low to high dense p: {means}.")
        outliers = found["snr_outlier_tokens"]
        if outliers:
            cells = "; ".join(f"cal {c} / eval {e} / layer {i}: {share:.0%}" for c, e, i, share in outliers[:8])
            more = f" and {len(outliers) - 8} more" if len(outliers) > 8 else ""
            lines.append(f"{setting}: one token holds most of the SNR noise at {cells}{more}.")
    return lines


def write_analysis_reports(result: AnalysisResult, figures: dict[str, Path], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "analysis.md", "html": out / "analysis.html", "json": out / "analysis.json"}
    tables = all_tables(result)
    write_json(paths["json"], result.to_json())
    markdown_text = _markdown(result, tables, figures, out)
    atomic_write_text(paths["markdown"], markdown_text)
    atomic_write_text(paths["html"], html_document(markdown_text, out))
    return paths


def _intro(result: AnalysisResult) -> str:
    analysed = sum(run["analysed"] for run in result.runs)
    tokens = ", ".join(f"{lang} {n}" for lang, n in result.tokens_per_language.items())
    bos = "included" if result.include_bos else "excluded"
    return (
        f"{analysed} of {len(result.runs)} runs analysed against the dense model; held-out windows: "
        f"{result.windows} x {result.seqlen} tokens per language (tokens counted: {tokens}; BOS {bos}). "
        f"LSAR rank {result.lsar['rank']}; {result.lape['n_neurons']} LAPE neurons "
        f"(bar p > {result.lape['bar']:.3f}). Peak memory {result.peak_rss_mb:.0f} MB."
    ) + (DRAW_NOTE if any("#" in run["label"] for run in result.runs) else "")


def _markdown(
    result: AnalysisResult, tables: list[tuple[str, list[Table]]], figures: dict[str, Path], out: Path
) -> str:
    parts = [f"# Internal analysis: {result.model}", "", _intro(result), "", "## Findings", ""]
    parts += [f"- {line}" for line in findings_text(result)] + [""]
    for setting, setting_tables in tables:
        parts += [f"## {setting}", ""]
        for _, title, header, rows in setting_tables:
            parts += [f"### {title}", "", markdown_table(header, rows), ""]
    parts += ["## Figures", ""]
    parts += [f"![{name}]({path.relative_to(out)})\n" for name, path in figures.items()]
    return "\n".join(parts)


def wandb_tables(result: AnalysisResult) -> dict[str, tuple[list[str], list[list[str]]]]:
    tables = {
        key: (header, rows) for _, setting_tables in all_tables(result) for key, _, header, rows in setting_tables
    }
    tables["snr_db/all_layers"] = _snr_long(result)
    return tables


def _snr_long(result: AnalysisResult) -> tuple[list[str], list[list[Any]]]:
    """Every SNR value: one row per run, evaluation language and layer."""
    rows = []
    labels = {run["key"]: run for run in result.runs}
    for key, per_language in result.snr_db.items():
        for lang, values in per_language.items():
            run = labels[key]
            rows += [[key, run["method"], run["calibration_language"], lang, i, v] for i, v in enumerate(values)]
    return ["run", "method", "calibration", "evaluation", "layer", "snr_db"], rows


def _bold(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan
