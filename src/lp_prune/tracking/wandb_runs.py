"""W&B runs as local run directories, for `lp-prune compare wandb:...` (sweep agents run on many machines,
so the run directories are rarely in one place).

    wandb:ENTITY/PROJECT/SWEEP_ID          the runs of a sweep (also: wandb:ENTITY/PROJECT/sweep=SWEEP_ID)
    wandb:ENTITY/PROJECT/group=NAME        the runs of a group (`wandb.group`; the local sweep runner's
                                           group is the sweep's name)

Each finished run becomes RUN_ROOT/<run name>-<run id>/ holding config.yaml, summary.json,
masks.safetensors and status, read through W&B's public API (`wandb.Api()`): the masks come from
the run's `pruning-masks` artifact. Runs logged by this version keep their summary.json and
config.yaml in that artifact, so the folder is the run directory as it was written. For older runs
both are rebuilt from the W&B run's config and summary (`summary_from_wandb`), the per-module
records from its `modules` table. Runs not finished on the server, or without a masks artifact,
are skipped with a warning. A folder already COMPLETE for the same W&B run is not downloaded again.

Nothing here runs against a real server in the tests (there is none offline): they use a fake of
the public API's objects with wandb 0.31's signatures.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lp_prune.config import DataConfig, PruneConfig
from lp_prune.config.method_keys import method_settings
from lp_prune.errors import ConfigError, DataError, UserError
from lp_prune.pruning.registry import choice_of
from lp_prune.safe_yaml import load_yaml_file
from lp_prune.storage.files import (
    atomic_write_text,
    checked_folder,
    read_json,
    refuse_link,
    remove_tree,
    write_json,
)
from lp_prune.tracking.run_dir import CONFIG_FILE, MASKS_FILE, SUMMARY_FILE, RunDirectory
from lp_prune.tracking.summary import RunSummary
from lp_prune.tracking.wandb_logger import DOWNLOADED_RUN_FILE, MASKS_ARTIFACT_TYPE, nested_config

log = logging.getLogger(__name__)

PREFIX = "wandb:"
SOURCE_FILE = DOWNLOADED_RUN_FILE  # which W&B run a downloaded folder came from, and its masks artifact
DEFAULT_ROOT = Path("runs") / "wandb"
STAGES = ("dense", "pruned")
FORMS = "wandb:ENTITY/PROJECT/SWEEP_ID or wandb:ENTITY/PROJECT/group=NAME"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class WandbSource:
    """A set of W&B runs: a sweep's or a group's, in ENTITY/PROJECT."""

    entity: str
    project: str
    sweep: str | None = None
    group: str | None = None

    @property
    def project_path(self) -> str:
        return f"{self.entity}/{self.project}"

    @property
    def folder(self) -> Path:
        """Where its runs go under the download root: ENTITY/PROJECT/sweep-ID or .../group-NAME."""
        leaf = f"sweep-{self.sweep}" if self.sweep else f"group-{self.group}"
        return Path(safe_name(self.entity)) / safe_name(self.project) / safe_name(leaf)

    def __str__(self) -> str:
        return PREFIX + self.project_path + (f"/{self.sweep}" if self.sweep else f"/group={self.group}")


def is_wandb_source(spec: str) -> bool:
    return str(spec).startswith(PREFIX)


def parse_source(spec: str) -> WandbSource:
    """'wandb:ENTITY/PROJECT/SWEEP_ID', '.../sweep=ID' or '.../group=NAME' (a group name may hold '/')."""
    parts = str(spec).removeprefix(PREFIX).split("/", 2)
    if len(parts) != 3 or not all(part.strip() for part in parts):
        raise UserError(f"'{spec}': a W&B source is {FORMS}")
    entity, project, selector = (part.strip() for part in parts)
    key, equals, value = selector.partition("=")
    if not equals:
        return WandbSource(entity, project, sweep=selector)
    if key == "sweep" and value:
        return WandbSource(entity, project, sweep=value)
    if key == "group" and value:
        return WandbSource(entity, project, group=value)
    raise UserError(f"'{spec}': a W&B source is {FORMS}")


def safe_name(text: str) -> str:
    """A folder name that cannot climb out of its parent."""
    return _SAFE.sub("_", text).strip("._") or "_"


# ---------------------------------------------------------------------------------------------------
# Downloading


def resolve_sources(paths: Iterable[str], root: Path = DEFAULT_ROOT, api: Any = None) -> list[str]:
    """Paths as they are, with every wandb: source replaced by the local folder of its runs."""
    return [str(fetch_runs(parse_source(p), root, api)) if is_wandb_source(p) else str(p) for p in paths]


def fetch_runs(source: WandbSource, root: Path = DEFAULT_ROOT, api: Any = None) -> Path:
    """Download the finished runs of `source` into ROOT/<source folder>/<run>/; return that folder."""
    api = api if api is not None else _public_api()
    folder = Path(root) / source.folder
    fetched, skipped = 0, []
    for run in _list_runs(api, source):
        reason = fetch_run(run, folder / _run_folder_name(run), source)
        if reason:
            skipped.append(f"{run.id} ({reason})")
        else:
            fetched += 1
    if skipped:
        log.warning("skipped %d W&B runs of %s: %s", len(skipped), source, "; ".join(skipped))
    if not fetched:
        raise DataError(f"{source}: no finished runs with a {MASKS_ARTIFACT_TYPE} artifact to compare")
    print(f"{source}: {fetched} runs in {folder}", flush=True)
    return folder


def fetch_run(run: Any, out: Path, source: WandbSource) -> str | None:
    """Write one W&B run as a run directory in `out`; return why it was skipped, or None."""
    state = str(getattr(run, "state", "")).lower()
    if state != "finished":
        return f"state {state or 'unknown'}"
    target = RunDirectory(out)
    if target.is_complete() and _source_of(out) == _run_path(run, source):
        return None  # downloaded before
    artifact = _masks_artifact(run)
    if artifact is None:
        return f"no {MASKS_ARTIFACT_TYPE} artifact"
    out.mkdir(parents=True, exist_ok=True)
    target.status_file.unlink(missing_ok=True)  # not complete until everything below is in place
    staging = out / ".download"
    remove_tree(staging)  # a link there goes itself: the download never lands where it points
    try:
        artifact.download(root=str(checked_folder(staging, out)))
        if not (staging / MASKS_FILE).is_file():
            return f"its {MASKS_ARTIFACT_TYPE} artifact holds no {MASKS_FILE}"
        config = _config(run, staging, source)
        if (staging / SUMMARY_FILE).is_file():  # the run's own summary.json, checked and kept as written
            summary = RunSummary.from_json(read_json(staging / SUMMARY_FILE), staging / SUMMARY_FILE)
        else:
            summary = summary_from_wandb(config, dict(run.summary), _modules_table(run, staging))
        atomic_write_text(target.config, yaml.safe_dump(config, sort_keys=False))
        write_json(target.summary, summary.to_json())
        refuse_link(target.masks)
        (staging / MASKS_FILE).replace(target.masks)
        record = {"path": _run_path(run, source), "name": run.name, "url": _url(run)}
        record["masks_artifact"] = _qualified_name(artifact)  # what compare and analyze mark as their input
        write_json(out / SOURCE_FILE, record)
        target.mark_complete()
    finally:
        with contextlib.suppress(OSError):
            remove_tree(staging)
    return None


def _public_api() -> Any:
    import wandb

    try:
        return wandb.Api()
    except Exception as error:  # no credentials, server unreachable
        raise UserError(f"W&B public API unavailable ({error}); log in with `wandb login`") from None


def _list_runs(api: Any, source: WandbSource) -> list[Any]:
    try:
        if source.sweep:
            return list(api.sweep(f"{source.project_path}/{source.sweep}").runs)
        return list(api.runs(source.project_path, filters={"group": source.group}))
    except UserError:
        raise
    except Exception as error:  # unknown sweep, project or entity; network errors
        raise DataError(f"{source}: cannot list its runs ({error})") from None


def _masks_artifact(run: Any) -> Any:
    artifacts = [a for a in run.logged_artifacts() if getattr(a, "type", None) == MASKS_ARTIFACT_TYPE]
    return artifacts[-1] if artifacts else None  # a resumed run logs a new version: the last is complete


def _config(run: Any, staging: Path, source: WandbSource) -> dict[str, Any]:
    """The run's config.yaml (from the artifact, else its W&B config), with the project and group the
    run is in on the server: inside a sweep that is the sweep's, whatever the run's config said."""
    path = staging / CONFIG_FILE
    if path.is_file():
        try:
            config = load_yaml_file(path)
        except ConfigError as error:
            raise DataError(f"W&B run {run.id}: cannot read its {CONFIG_FILE} ({error})") from None
    else:
        config = nested_config(dict(run.config))
    wandb_section = config.setdefault("wandb", {})
    wandb_section["project"] = source.project
    group = getattr(run, "group", None) or source.group
    if group:
        wandb_section["group"] = group
    return config


def _modules_table(run: Any, staging: Path) -> list[dict[str, Any]]:
    """The rows of the run's `modules` table (a table-file in its summary), as records."""
    reference = dict(run.summary).get("modules")
    if not isinstance(reference, Mapping) or "path" not in reference:
        return []
    handle = run.file(reference["path"]).download(root=str(staging), replace=True)
    handle.close()
    table = json.loads((staging / reference["path"]).read_text(encoding="utf-8"))
    return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]


def _run_folder_name(run: Any) -> str:
    return safe_name(f"{run.name}-{run.id}" if run.name else run.id)


def _run_path(run: Any, source: WandbSource) -> str:
    return f"{source.project_path}/{run.id}"


def _source_of(folder: Path) -> str | None:
    try:
        return read_json(folder / SOURCE_FILE).get("path")
    except (DataError, AttributeError):
        return None


def _qualified_name(artifact: Any) -> str | None:
    try:
        return str(artifact.qualified_name)  # ENTITY/PROJECT/NAME:vN
    except Exception:  # the fake API has none
        return None


def _url(run: Any) -> str | None:
    try:
        return run.url
    except Exception:  # the fake API and some server versions have none
        return None


# ---------------------------------------------------------------------------------------------------
# summary.json from a W&B run's config and summary (runs logged before the artifact held it)


def summary_from_wandb(
    config: Mapping[str, Any], values: Mapping[str, Any], modules: list[dict[str, Any]]
) -> RunSummary:
    """What compare reads from summary.json, rebuilt from what the pipeline logs to W&B.

    config: the run's nested config; values: its W&B summary (`sparsity`, `ppl/<stage>/<lang>`,
    `bpb/...`, `<metric>/<stage>/<task>`, `time/<phase>`); modules: its `modules` table as records.
    Not in W&B, so not here: per-module numel, solver_loss and percdamp, eval token counts,
    downstream item counts and stderrs, versions, peak memory.
    """
    prune_keys = set(PruneConfig.__dataclass_fields__) | set(method_settings())
    prune = {k: v for k, v in (config.get("prune") or {}).items() if k in prune_keys}
    data = {k: v for k, v in (config.get("data") or {}).items() if k in DataConfig.__dataclass_fields__}
    prune_config, data_config = PruneConfig.of(**prune), DataConfig(**data)
    perplexity: dict[str, dict[str, float]] = {}
    bits: dict[str, dict[str, float]] = {}
    downstream: dict[str, dict[str, dict[str, Any]]] = {}
    timings: dict[str, float] = {}
    for key, value in values.items():
        parts = key.split("/")
        if parts[0] == "time" and len(parts) == 2:
            timings[parts[1]] = value
        elif len(parts) == 3 and parts[0] in ("ppl", "bpb") and parts[1] in STAGES:
            (perplexity if parts[0] == "ppl" else bits).setdefault(parts[1], {})[parts[2]] = value
        elif len(parts) >= 3 and parts[-2] in STAGES and isinstance(value, int | float):
            metric = "/".join(parts[:-2])  # filters stay in the name: exact_match/strict-match
            downstream.setdefault(parts[-2], {}).setdefault(parts[-1], {})[metric] = value
    return RunSummary(
        model=(config.get("model") or {}).get("name"),
        method=prune_config.method.name,
        method_spec={"name": choice_of(prune_config.method), "settings": prune_config.method.settings()},
        pattern=prune_config.pattern,
        target_sparsity=prune_config.target_sparsity,
        calibration_language=data_config.calibration_language,
        calibration_mix=data_config.calibration_counts(),
        statistics=prune_config.statistics,
        nsamples=data_config.calibration_samples,
        seqlen=data_config.seqlen,
        calibration_tokens=data_config.calibration_samples * data_config.seqlen,  # the [windows x seqlen] set
        seed=config.get("seed"),
        sparsity=values.get("sparsity"),
        dense_zeros=values.get("dense_zeros"),
        perplexity=perplexity,
        bits_per_byte=bits,
        modules=modules,
        timings_s=timings,
        downstream=downstream or None,
        rebuilt_from_wandb=True,
    )
