"""The study's report: study.json and study.md, from the files the grid, `analyze` and `compare` wrote.

Nothing in it is typed by hand except the study's own statements (what the paper reports, in words):
the verdicts are compare's findings, the spreads are computed from the runs' summary.json files, the
times and memory are the runs' and the analysis's own records.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from lp_prune.analysis.compare import findings as claims_registry
from lp_prune.analysis.compare.stats import Estimate, is_finite
from lp_prune.analysis.compare.verdicts import (
    DOES_NOT_APPLY,
    INCONCLUSIVE,
    NO_DATA,
    NOT_SUPPORTED,
    SUPPORTED,
)
from lp_prune.analysis.runs import Run
from lp_prune.config.tasks import task_language

AGREEMENT = {
    SUPPORTED: "agrees",
    NOT_SUPPORTED: "disagrees",
    INCONCLUSIVE: "cannot tell",
    NO_DATA: "no data",
    DOES_NOT_APPLY: "does not apply",
}


def claims_table(findings: dict[str, list[dict[str, Any]]], settings: list[str]) -> list[dict[str, Any]]:
    """One row per claim: the study's statement, and per setting the tool's verdict and whether they agree
    (a claim beyond the study, or the study's open question, has no agreement to read)."""
    rows = []
    for claim in claims_registry.CLAIMS:
        row: dict[str, Any] = {"claim": claim.id, "statement": claim.statement, "study": claim.study}
        row["limits"] = claim.limits
        row["tool"] = {}
        for setting in settings:
            found = next((f for f in findings.get(setting, []) if f["claim"] == claim.id), None)
            verdict = found["verdict"] if found else NO_DATA
            agreement = AGREEMENT[verdict] if claim.standing == claims_registry.STUDY else claim.standing
            detects = detectable_text((found or {}).get("details") or {})
            row["tool"][setting] = {"verdict": verdict, "agreement": agreement, **languages_held(found)}
            if detects:
                row["tool"][setting]["detectable"] = detects
        rows.append(row)
    return rows


def languages_held(finding: dict[str, Any] | None) -> dict[str, Any]:
    """For a claim judged language by language: in how many it holds, and the exceptions by name."""
    per_language = ((finding or {}).get("details") or {}).get("languages") or {}
    outcomes = {lang: cell.get("outcome") for lang, cell in per_language.items() if isinstance(cell, dict)}
    if not outcomes or not all(isinstance(o, str) for o in outcomes.values()):
        return {}
    held = [lang for lang, outcome in outcomes.items() if outcome == "holds"]
    exceptions = {lang: outcome for lang, outcome in outcomes.items() if outcome != "holds"}
    return {"held": len(held), "languages": len(outcomes), "exceptions": exceptions}


def detectable_text(details: dict[str, Any]) -> str | None:
    """The smallest true effect the claim's test finds with 80% power on these data, in the claim's
    units: the pooled estimate's where the claim pools, else the median over its languages or cells
    (each one's own se and df), with the range."""
    pooled = details.get("pooled")
    if isinstance(pooled, dict) and is_finite(pooled.get("se")):
        return f"{Estimate(0.0, pooled['se'], pooled.get('df', math.inf)).detectable():.3g} pooled"
    if is_finite(details.get("se")) and isinstance(details.get("excess"), list):  # a mean over runs
        return f"{Estimate(0.0, details['se'], len(details['excess']) - 1).detectable():.3g} over runs"
    found = [
        Estimate(0.0, part["se"], part["df"]).detectable()
        for group in ("languages", "cells", "relations")
        for cell in (details.get(group) or {}).values()
        if isinstance(cell, dict)
        for part in (cell.get("specific", cell),)
        if is_finite(part.get("se")) and isinstance(part.get("df"), int | float) and part["df"] > 0
    ]
    if not found:
        return None
    return f"median {statistics.median(found):.3g} over {len(found)} ({min(found):.3g}-{max(found):.3g})"


def cell_text(cell: dict[str, Any]) -> str:
    """'supported (agrees; 6 of 7, exceptions: sw undecided)' for the claims table."""
    text = f"{cell['verdict']} ({cell['agreement']}"
    if "held" in cell:
        text += f"; {cell['held']} of {cell['languages']}"
        if cell["exceptions"]:
            text += ", exceptions: " + ", ".join(f"{lang} {o}" for lang, o in cell["exceptions"].items())
    return text + ")"


def study_settings(runs: list[Run]) -> list[str]:
    """The settings with calibration-language recipes (the claims are about them): not the magnitude or RTN
    baselines."""
    languages: dict[str, set[str]] = {}
    for run in filter(calibrated_on_a_language, runs):
        languages.setdefault(run.setting, set()).add(run.target_language)
    return [setting for setting, found in languages.items() if len(found) >= 2]


def calibrated_on_a_language(run: Run) -> bool:
    """A run whose calibration language the claims are about: one target language (never RTN or magnitude,
    which read no calibration data)."""
    return run.target_language is not None


def draw_spreads(runs: list[Run]) -> list[dict[str, Any]]:
    """Each headline number over the calibration draws (runs of one setting and language, seeds apart):
    own-language perplexity, and mean downstream accuracy of the language's tasks."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in filter(calibrated_on_a_language, runs):
        groups.setdefault((run.setting, run.target_language), []).append(run)
    rows = []
    for (setting, language), members in sorted(groups.items()):
        members.sort(key=lambda run: str(run.calibration_seed))
        numbers = {"perplexity": [run.summary.perplexity.get("pruned", {}).get(language) for run in members]}
        numbers["accuracy"] = [mean_accuracy(run, language) for run in members]
        for name, values in numbers.items():
            if any(value is None for value in values):
                continue
            mean, spread = statistics.fmean(values), max(values) - min(values)
            rows.append(
                {
                    "setting": setting,
                    "language": language,
                    "number": name,
                    "seeds": [run.calibration_seed[0] for run in members],
                    "values": values,
                    "mean": mean,
                    "spread": spread,
                    "relative_spread": spread / mean if mean else None,
                }
            )
    return rows


def spread_text(spread: float, mean: float) -> str:
    """A spread for the table; one below float rounding of the mean (two means of equal accuracies taken
    over different tasks can differ in their last bit) is shown as 0."""
    return "0" if abs(spread) <= 1e-12 * max(abs(mean), 1.0) else f"{spread:.3g}"


def mean_accuracy(run: Run, language: str) -> float | None:
    """Mean accuracy over the pruned model's downstream tasks of `language`."""
    tasks = (run.summary.downstream or {}).get("pruned", {})
    scores = [m["acc"] for task, m in tasks.items() if task_language(task) == language and "acc" in m]
    return statistics.fmean(scores) if scores else None


def grid_resources(runs: list[Run], analysis: dict[str, Any]) -> dict[str, Any]:
    """Summed phase times of the runs and the analysis, and the peak memory of any one process."""
    phases: dict[str, float] = {}
    for run in runs:
        for phase, seconds in top_level_phases(run.summary.timings_s).items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    run_seconds = sum(phases.values())
    peaks = [run.summary.peak_rss_mb for run in runs if run.summary.peak_rss_mb] + [analysis.get("peak_rss_mb") or 0]
    return {
        "runs": len(runs),
        "runs_time_s": round(run_seconds, 1),
        "phase_s": {phase: round(seconds, 1) for phase, seconds in phases.items()},
        "analysis_time_s": round(sum((analysis.get("timings_s") or {}).values()), 1),
        "peak_rss_mb": round(max(peaks), 1),
    }


def top_level_phases(timings: dict[str, float]) -> dict[str, float]:
    """The phases that are no part of another ('prune', not its 'prune_solve'): their sum is the run's time."""
    return {key: value for key, value in timings.items() if not any(key.startswith(f"{k}_") for k in timings)}


def study_record(
    runs: list[Run],
    tables: dict[str, Any],
    analysis: dict[str, Any],
    made: dict[str, Any],
    repeat: dict[str, Any] | None,
    figures: list[str] | None = None,
    sizes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    settings = study_settings(runs)
    return {
        "model": tables.get("model"),
        "provenance": made,
        "resources": grid_resources(runs, analysis),
        "sizes": sizes or {},
        "settings": settings,
        "claims": claims_table(tables.get("findings", {}), settings),
        "findings": {setting: tables.get("findings", {}).get(setting, []) for setting in settings},
        "draw_spreads": draw_spreads(runs),
        "repeat": repeat,
        "figures": figures or [],
    }


def study_markdown(record: dict[str, Any]) -> str:
    made, used = record["provenance"], record["resources"]
    machine = made["machine"]
    commit = (made["commit"] or "unknown")[:12] + (" (with local changes)" if made["dirty"] else "")
    lines = [
        f"# The study on {record['model']}",
        "",
        f"Made by `lp-prune study` at commit {commit} on {made['date']}, on {machine['cpus']} CPUs "
        f"({machine['torch_threads']} torch threads, matmul {machine['matmul_gflops']} GFLOP/s).",
        f"{used['runs']} runs: {used['runs_time_s'] / 60:.1f} min of run phases, analysis "
        f"{used['analysis_time_s'] / 60:.1f} min; this command ran {made['study_wall_s'] / 60:.1f} min "
        f"(finished runs it found are not counted again); peak memory of one process {used['peak_rss_mb']:.0f} MB.",
        "",
        "Full tables and figures: [report.md](report.md) (perplexity matrices, downstream tables, mask IoU, SNR) "
        "and [analysis/analysis.md](analysis/analysis.md) (per-layer SNR, LSAR, LAPE).",
        "",
        "## The claims, side by side with the study",
        "",
    ]
    settings = record["settings"]
    lines += [
        "| claim | the study (Llama-3-8B, Aya-23-8B) | " + " | ".join(settings) + " |",
        "|---|---|" + "---|" * len(settings),
    ]
    for row in record["claims"]:
        study = row["study"] + (f" *Here: {row['limits']}*" if row["limits"] else "")
        cells = [cell_text(row["tool"][s]) for s in settings]
        lines.append(f"| {row['claim']} | {study} | " + " | ".join(cells) + " |")
    lines += ["", "## The findings with their numbers", ""]
    for setting, found in record["findings"].items():
        lines += [f"### {setting}", ""]
        for f in found:
            detects = detectable_text(f.get("details") or {})
            power = f" (detects {detects} with 80% power)" if detects else ""
            lines.append(f"- **{f['claim']} {f['verdict']}**{power}: {f['evidence']}")
        lines.append("")
    lines += repeatability_lines(record)
    lines += figure_lines(record.get("figures", []))
    return "\n".join(lines) + "\n"


def figure_lines(figures: list[str]) -> list[str]:
    """The comparison's and the analysis's figures, shown in place (paths relative to the report)."""
    if not figures:
        return []
    lines = ["## Figures", ""]
    for figure in figures:
        lines += [f"### {Path(figure).stem.replace('_', ' ')}", "", f"![{Path(figure).stem}]({figure})", ""]
    return lines


def report_figures(out: Path) -> list[str]:
    """The PNG files of the report folder and its analysis/, relative to it, in a stable order."""
    return sorted(str(path.relative_to(out)) for pattern in ("*.png", "analysis/*.png") for path in out.glob(pattern))


def repeatability_lines(record: dict[str, Any]) -> list[str]:
    lines = [
        "## Repeatability",
        "",
        "Each headline number over the two calibration draws (seeds): own-language perplexity, and mean "
        "accuracy over the language's downstream tasks.",
        "",
        "| setting | language | number | values (by seed) | mean | spread | spread / mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in record["draw_spreads"]:
        values = ", ".join(f"{v:.4g}" for v in row["values"])
        relative = "-" if row["relative_spread"] is None else f"{row['relative_spread']:.2%}"
        lines.append(
            f"| {row['setting']} | {row['language']} | {row['number']} | {values} | {row['mean']:.4g} | "
            f"{spread_text(row['spread'], row['mean'])} | {relative} |"
        )
    repeat = record["repeat"]
    lines.append("")
    if repeat is None:
        lines.append("No run was repeated (`--repeat` reruns the grid's first run and compares).")
    elif repeat["identical"]:
        lines.append(
            f"The grid's first run, repeated on this machine ({repeat['repeat']}), gave the same "
            f"{repeat['numbers']} perplexity and downstream numbers bit for bit, and byte-identical masks."
        )
    else:
        shown = "; ".join(f"{d['metric']}: {d['first']} vs {d['repeat']}" for d in repeat["differences"][:8])
        lines.append(
            f"The grid's first run, repeated on this machine ({repeat['repeat']}), differed in "
            f"{len(repeat['differences'])} of {repeat['numbers']} numbers ({shown}); masks identical: "
            f"{repeat['masks_identical']}."
        )
    return [*lines, ""]


def write_study_report(out: Path, record: dict[str, Any]) -> dict[str, Path]:
    from lp_prune.storage.files import atomic_write_text, write_json

    paths = {"study": out / "study.md", "record": out / "study.json"}
    write_json(paths["record"], record)
    atomic_write_text(paths["study"], study_markdown(record))
    return paths
