"""The study's power plan: from a pilot (a previous study.json), what each claim's test could detect at
a grid's sizes, the sizes it needs to detect a stated effect with 80% power, and the time the grid
would take on this machine.

    pilot = Pilot.from_record(read_json("docs/results/study.json"))
    plan = make_plan(pilot, GridSizes(items_per_cell=150, draws=2, families={...}, analyze_tokens=2540))
    print(plan_text(plan))

The downstream claim (C3) is planned with the verdict engine's own noise model: each cell's contrast
(own row minus the mean of the others) gets the item noise of its items and the draw noise of its
rows' draws, and the cells are pooled with `differences.pool`, so the detectable effect a plan prints
is the one the engine will report on data with the pilot's noise. Perplexity and SNR claims (C1, C2,
C7) are planned from the pilot's per-language standard errors: their noise is the spread over
calibration draws, which more evaluation text does not shrink, so their size is the number of draws.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lp_prune.analysis.compare.differences import Noise, pool
from lp_prune.analysis.compare.stats import is_finite
from lp_prune.analysis.power import detectable_effect, draws_for, smallest_size

LAPE_MIN_TOKENS = 2500  # analyze's own warning threshold: LAPE's activation probabilities are noisy below it


@dataclass(frozen=True)
class Targets:
    """The effects the grid should detect with 80% power."""

    c3_pooled: float = 0.03  # accuracy, the mean over every (task, language) cell
    c3_family: float = 0.06  # accuracy, the mean over one task family's languages
    perplexity: float = 0.02  # C1, C7: a 2% perplexity margin (log ratio)
    snr_db: float = 0.5  # C2: last-layer SNR margin in dB
    lape_tokens: int = LAPE_MIN_TOKENS


@dataclass(frozen=True)
class GridSizes:
    """What a grid runs: items per (task, language) cell, calibration draws per row, the task families
    that count for C3 with the items each has per language, the rows (calibration languages), and the
    tokens per language `analyze` reads."""

    items_per_cell: int
    draws: int
    families: Mapping[str, int]  # family -> items it has per language (caps items_per_cell)
    rows: int = 7
    analyze_tokens: int = 0

    def items(self, family: str) -> int:
        return min(self.items_per_cell, self.families[family])

    @property
    def items_per_run(self) -> int:
        """Items a pruned model scores: every family in every language."""
        return sum(map(self.items, self.families)) * self.rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "items_per_cell": self.items_per_cell,
            "draws": self.draws,
            "families": dict(self.families),
            "rows": self.rows,
            "analyze_tokens": self.analyze_tokens,
            "items_per_run": self.items_per_run,
        }


@dataclass(frozen=True)
class Pilot:
    """The noise a previous study measured, and what it cost."""

    item_sd: float | None  # SD of a C3 cell's per-item contrast (own row minus the others' mean)
    draw_sd: float | None  # SD of one task's score over calibration draws
    c3_source: str  # how those two were read
    per_draw_sd: Mapping[str, float]  # claim -> SD of one row's number over draws (C1, C2: log ppl, dB)
    phase_s: Mapping[str, float]  # summed seconds per run phase over the pilot's runs
    sizes: Mapping[str, Any]  # the pilot's own sizes (runs, items per run, tokens), where recorded
    matmul_gflops: float | None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Pilot:
        findings = [f for found in (record.get("findings") or {}).values() for f in found]
        c3 = [f.get("details") or {} for f in findings if f.get("claim") == "C3"]
        item_sd, draw_sd, source = c3_noise(c3, record.get("draw_spreads") or [])
        draws = int((record.get("sizes") or {}).get("draws") or 2)
        per_draw = {
            claim: sd
            for claim in ("C1", "C2")
            if (sd := per_draw_sd([f.get("details") or {} for f in findings if f.get("claim") == claim], draws))
        }
        resources = record.get("resources") or {}
        phases = dict(resources.get("phase_s") or {})
        if not phases and resources.get("runs_time_s"):
            phases = {"runs (all phases)": resources["runs_time_s"]}
        if resources.get("analysis_time_s"):
            phases["analyze"] = resources["analysis_time_s"]
        sizes = dict(record.get("sizes") or {}) | {"runs": resources.get("runs")}
        machine = (record.get("provenance") or {}).get("machine") or {}
        return cls(item_sd, draw_sd, source, per_draw, phases, sizes, machine.get("matmul_gflops"))


def c3_noise(c3_details: list[Mapping[str, Any]], spreads: list[Mapping[str, Any]]) -> tuple[Any, Any, str]:
    """Item SD and per-task draw SD of the pilot's C3 cells. Cells that record both (item_sd, draw_sd)
    give them directly. Older records give each cell's se and n only: the item SD is se x sqrt(n) (their
    se was item noise), and the draw SD is read from the spread of each language's mean accuracy over
    its draws, times the square root of the language's task count (tasks taken as independent)."""
    cells = [cell for details in c3_details for cell in (details.get("cells") or {}).values()]
    if not cells:
        return None, None, "the pilot has no downstream cells"
    if all("item_sd" in cell and "draw_sd" in cell for cell in cells):
        item = _rms(cell["item_sd"] for cell in cells)
        draw = _rms(cell["draw_sd"] for cell in cells)
        return item, draw, f"{len(cells)} cells' own item and draw noise"
    paired = [cell for cell in cells if cell.get("paired") and cell.get("n")]
    item = _rms(cell["stderr" if "stderr" in cell else "se"] * math.sqrt(cell["n"]) for cell in paired)
    tasks = len({task for details in c3_details for task in (details.get("cells") or {})})
    languages = {cell["language"] for cell in cells}
    per_language_tasks = tasks / max(len(languages), 1) + len(_left_out(c3_details)) / max(len(languages), 1)
    accuracy = [row["values"] for row in spreads if row.get("number") == "accuracy" and len(row["values"]) >= 2]
    variances = [statistics.variance(values) for values in accuracy]
    draw = math.sqrt(statistics.fmean(variances) * per_language_tasks) if variances else None
    how = (
        f"{len(paired)} cells' se x sqrt(n) for the items; the draw SD from {len(variances)} rows' mean-accuracy "
        f"spread over draws x sqrt({per_language_tasks:.1f} tasks per language)"
    )
    return item, draw, how


def _left_out(c3_details: list[Mapping[str, Any]]) -> set[str]:
    """Tasks left out at chance (counted in a language's mean accuracy, not in the cells)."""
    found: set[str] = set()
    for details in c3_details:
        found |= set(details.get("left_out_at_chance") or [])
    return found


def per_draw_sd(details: list[Mapping[str, Any]], draws: int) -> float | None:
    """The SD of one row's number over draws, from the per-language contrasts' standard errors (own row
    against one other, both with `draws` draws: se = sd x sqrt(2 / draws)); the median over languages."""
    ses = [
        cell["se"]
        for found in details
        for cell in (found.get("languages") or {}).values()
        if isinstance(cell, Mapping) and is_finite(cell.get("se"))
    ]
    return statistics.median(ses) / math.sqrt(2 / draws) if ses else None


def _rms(values: Iterable[float]) -> float | None:
    kept = [v for v in values if is_finite(v)]
    return math.sqrt(statistics.fmean(v * v for v in kept)) if kept else None


# --- C3: the engine's pooled estimate at planned sizes --------------------------------------------------


def cell_noise(pilot: Pilot, items: int, draws: int, rows: int) -> Noise:
    """The noise of one cell's own-minus-others contrast at `items` items and `draws` draws per row, as
    TaskScores.contrast builds it (weights +1 and -1/(rows - 1))."""
    weights_sq = 1 + (rows - 1) * (1 / (rows - 1)) ** 2
    draw_var = (pilot.draw_sd or 0.0) ** 2 * weights_sq / draws
    return Noise(0.0, max((pilot.item_sd or 0.0) ** 2 / items, 1 / items**2), items - 1, draw_var, rows * (draws - 1))


def c3_detectable(pilot: Pilot, sizes: GridSizes, families: Iterable[str] | None = None) -> float:
    """The minimum detectable effect of the mean over the cells of `families` (all by default)."""
    chosen = list(families or sizes.families)
    noises = [cell_noise(pilot, sizes.items(f), sizes.draws, sizes.rows) for f in chosen for _ in range(sizes.rows)]
    pooled = pool(noises, draw_df_cap=sizes.rows * (sizes.draws - 1), spread=(math.nan, 0))
    return pooled.estimate.detectable()


def c3_items_needed(pilot: Pilot, sizes: GridSizes, target: float, families: list[str] | None = None) -> int | None:
    """The fewest items per cell at which the mean over the cells of `families` (all by default)
    detects `target` at the grid's draws; None when the families run out of items first, or the draws'
    noise alone hides the effect."""
    chosen = families or list(sizes.families)

    def enough(items: int) -> bool:
        return c3_detectable(pilot, replace(sizes, items_per_cell=items), chosen) <= target

    return smallest_size(enough, limit=max(sizes.families[f] for f in chosen))


def c3_draws_note(pilot: Pilot, sizes: GridSizes, targets: Targets, most: int = 8) -> str:
    """What more draws per row would give C3 at every family's full item count (families with fewer
    items than a cell asks for are left out: more draws cannot make up for them)."""
    full = replace(sizes, items_per_cell=max(sizes.families.values()))
    large = [f for f, n in sizes.families.items() if n >= sizes.items_per_cell] or list(sizes.families)
    for draws in range(sizes.draws, most + 1):
        trial = replace(full, draws=draws)
        pooled = c3_detectable(pilot, trial)
        family = max(c3_detectable(pilot, trial, [f]) for f in large)
        if pooled <= targets.c3_pooled and family <= targets.c3_family:
            return (
                f"C3 reaches its targets with {draws} draws per row and every item of the families large "
                "enough for a cell "
                f"(pooled {pooled:.3f}, worst family {family:.3f})."
            )
    return f"C3 does not reach its targets with every family's items and up to {most} draws per row."


# --- the plan ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One claim's line of the plan: what its test detects at the grid's sizes and what it needs."""

    claim: str
    quantity: str
    grid: float
    needed: float | None
    detectable: float | None
    target: float
    note: str = ""

    @property
    def enough(self) -> bool:
        return self.detectable is not None and self.detectable <= self.target


@dataclass
class Plan:
    lines: list[Line]
    phases: dict[str, float] = field(default_factory=dict)  # projected seconds on this machine
    notes: list[str] = field(default_factory=list)


def make_plan(
    pilot: Pilot,
    sizes: GridSizes,
    targets: Targets = Targets(),
    grid_runs: int | None = None,
    matmul_gflops: float | None = None,
) -> Plan:
    plan = Plan([])
    if pilot.item_sd is not None:
        needed = c3_items_needed(pilot, sizes, targets.c3_pooled)
        pooled = c3_detectable(pilot, sizes)
        plan.lines.append(Line("C3 pooled", "items per cell", sizes.items_per_cell, needed, pooled, targets.c3_pooled))
        for family, available in sizes.families.items():
            needed = c3_items_needed(pilot, sizes, targets.c3_family, [family])
            detectable = c3_detectable(pilot, sizes, [family])
            note = f"{available} items per language" if needed is None else ""
            plan.lines.append(
                Line(f"C3 {family}", "items per cell", sizes.items(family), needed, detectable, targets.c3_family, note)
            )
        if not all(line.enough for line in plan.lines):
            plan.notes.append(c3_draws_note(pilot, sizes, targets))
        noise = f"item SD {pilot.item_sd:.3f}, draw SD {pilot.draw_sd or 0:.3f}"
        plan.notes.append(f"C3 noise: {noise} ({pilot.c3_source}).")
    for claim, target in (("C1", targets.perplexity), ("C2", targets.snr_db)):
        sd = pilot.per_draw_sd.get(claim)
        if sd is None:
            continue
        se, df = sd * math.sqrt(2 / sizes.draws), sizes.rows * (sizes.draws - 1)
        needed = draws_for(target, sd, sizes.rows)
        plan.lines.append(Line(claim, "draws per row", sizes.draws, needed, detectable_effect(se, df), target))
    plan.lines.append(
        Line(
            "C6 (LAPE)",
            "tokens per language",
            sizes.analyze_tokens,
            targets.lape_tokens,
            None,
            targets.lape_tokens,
            "enough" if sizes.analyze_tokens >= targets.lape_tokens else "below analyze's threshold",
        )
    )
    if grid_runs:
        plan.phases = project_phases(pilot, sizes, grid_runs, matmul_gflops)
        if not pilot.sizes.get("items_per_run"):
            plan.notes.append(
                "The pilot records no phase times or items per run: its whole run time is scaled by runs "
                "only, not by the grid's downstream items or analysis tokens."
            )
    return plan


def project_phases(
    pilot: Pilot, sizes: GridSizes, grid_runs: int, matmul_gflops: float | None = None
) -> dict[str, float]:
    """The pilot's phase times scaled to the grid: per run, downstream by items per run, analysis by
    tokens x runs; all by the pilot's matmul rate over this machine's when both are known."""
    runs = pilot.sizes.get("runs") or 0
    if not runs:
        return {}
    rate = (pilot.matmul_gflops / matmul_gflops) if (pilot.matmul_gflops and matmul_gflops) else 1.0
    items_now, items_grid = pilot.sizes.get("items_per_run"), sizes.items_per_run
    projected = {}
    for phase, seconds in pilot.phase_s.items():
        scale = grid_runs / runs
        if phase.startswith("downstream") and items_now:
            scale *= items_grid / items_now
        if phase == "analyze" and pilot.sizes.get("analyze_tokens"):
            scale *= sizes.analyze_tokens / pilot.sizes["analyze_tokens"]
        projected[phase] = seconds * scale * rate
    return projected
