"""W&B runs about other runs: `lp-prune compare`, `analyze` and `eval` log one each (job type
`compare`, `analyze`, `eval`) beside the runs they read, with their tables and figures, a verdicts
table (setting, claim, verdict, evidence), the HTML report as `wandb.Html`, their options as config,
and the masks artifacts they read as inputs (lineage).

Keys built from run settings go through `panel_keys`, so that panels and the runs table take them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lp_prune.config import WandbConfig
from lp_prune.tracking.run_dir import RunDirectory
from lp_prune.tracking.wandb_logger import DOWNLOADED_RUN_FILE, MASKS_ARTIFACT_TYPE, resolve_mode

log = logging.getLogger(__name__)

REPORT_KEY = "report"  # the HTML report
VERDICTS_KEY = "verdicts"  # the claims' verdicts, one row per setting and claim
VERDICT_COLUMNS = ["setting", "claim", "verdict", "evidence"]


def verdicts_table(findings: Mapping[str, Sequence[Any]]) -> tuple[list[str], list[list[str]]]:
    """{setting: [Finding, ...]} as the verdicts table: one row per setting and claim."""
    rows = [
        [setting, finding.claim, finding.verdict, finding.evidence]
        for setting, found in findings.items()
        for finding in found
    ]
    return list(VERDICT_COLUMNS), rows


_PANEL_UNSAFE = re.compile(r"[^\w+-]+")


def panel_key(key: str) -> str:
    """A W&B key that panels and the runs table take as it is: '/' separates sections, and inside a
    section anything but letters, digits, '_', '+' and '-' (spaces, '=', '.') becomes '_'
    ('perplexity/wanda_unstructured_s0.5' -> 'perplexity/wanda_unstructured_s0_5')."""
    return "/".join(_PANEL_UNSAFE.sub("_", part).strip("_") or "_" for part in key.split("/"))


def panel_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` under `panel_key` names; a key that would land on another's name keeps a short hash
    of its own name, so that nothing is overwritten."""
    safe: dict[str, Any] = {}
    for key, value in values.items():
        name = panel_key(key)
        if name in safe:
            name = f"{name}_{hashlib.sha1(key.encode('utf-8')).hexdigest()[:6]}"
        safe[name] = value
    return safe


def masks_artifacts(run_dirs: Iterable[Path]) -> list[str]:
    """The masks artifacts the runs in `run_dirs` logged, as use_artifact names them: a local run's
    (recorded in its marker when it was logged), a downloaded run's (recorded when it was fetched)."""
    names = []
    for folder in run_dirs:
        logged = RunDirectory(folder).wandb_record().get("masks_artifact") or _downloaded_artifact(folder)
        if logged:
            names.append(logged if ":" in logged else f"{logged}:latest")
    return list(dict.fromkeys(names))


def _downloaded_artifact(folder: Path) -> str | None:
    import json

    try:
        record = json.loads((Path(folder) / DOWNLOADED_RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = record.get("masks_artifact") if isinstance(record, dict) else None
    return name if isinstance(name, str) and name else None


def use_artifacts(run: Any, names: Sequence[str]) -> None:
    """Mark `names` as inputs of `run` (lineage). They are always in its config (`input_artifacts`);
    wandb 0.31 refuses use_artifact offline, so there they stay in the config alone."""
    if not names:
        return
    run.config.update({"input_artifacts": list(names)}, allow_val_change=True)
    if getattr(run, "offline", False):
        return
    for name in names:
        try:
            run.use_artifact(name, type=MASKS_ARTIFACT_TYPE)
        except Exception as error:  # a run whose artifact never reached the server (logged offline, not synced)
            log.warning("W&B: cannot mark %s as an input of this run (%s)", name, error)


def log_analysis_run(
    project: str,
    group: str | None,
    name: str,
    tables: Mapping[str, tuple[list[str], list[list[Any]]]],
    images: Mapping[str, Path],
    save_dir: Path | None,
    job_type: str = "analysis",
    summary: Mapping[str, Any] | None = None,
    entity: str | None = None,
    config: Mapping[str, Any] | None = None,
    inputs: Sequence[str] = (),
    report: Path | None = None,
) -> str:
    """A W&B run of `job_type` ('compare', 'analyze', 'eval') holding tables, figures and summary values
    beside the runs it is about, its options as `config`, the masks artifacts it read as `inputs` and
    its HTML `report` (a self-contained page) as `wandb.Html` under REPORT_KEY. Keys go as they are
    given (`panel_keys` makes names built from run settings safe). Returns where it is (see
    `run_location`)."""
    import wandb

    mode = resolve_mode(WandbConfig(project=project))
    if mode == "disabled":
        return "W&B: disabled"
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    folder = str(save_dir.resolve()) if save_dir is not None else None  # None: WANDB_DIR, else ./wandb
    run = wandb.init(
        entity=entity,
        project=project,
        group=group,
        name=name,
        job_type=job_type,
        dir=folder,
        mode=mode,
        config=dict(config) if config else None,
    )
    try:
        use_artifacts(run, inputs)
        for key, (columns, rows) in tables.items():
            run.log({key: wandb.Table(columns=columns, data=rows)})
        if images:
            run.log({key: wandb.Image(str(path)) for key, path in images.items()})
        if report is not None:
            run.log({REPORT_KEY: wandb.Html(report.read_text(encoding="utf-8"), inject=False)})
        if summary:
            run.summary.update(dict(summary))
        location = run_location(run)
    finally:
        run.finish()
    return location


def run_location(run: Any) -> str:
    """One line saying where a W&B run is: its URL online, the `wandb sync` command offline."""
    if getattr(run, "offline", False) or not getattr(run, "url", None):
        return f"W&B (offline): wandb sync {run.settings.sync_dir}"
    return f"W&B: {run.url}"
