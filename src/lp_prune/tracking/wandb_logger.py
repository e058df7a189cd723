"""W&B through Lightning's WandbLogger: offline unless credentials are there, per-layer axis, tables.

The mode is passed to wandb.init explicitly: environment variables are read once, when wandb's
session first loads its settings, so setting WANDB_MODE later may be ignored (and
WandbLogger(offline=True) would flip it for the whole process behind the caller's back).

A pruning run's W&B run has job type `prune`; its id is kept in the run directory's marker, so that
`lp-prune run --resume` continues that W&B run (`resume="allow"`; offline, the resumed part is a
second offline-run folder with the same id, which `wandb sync` uploads into the one run, in order).
Per-layer metrics (`prune/...`, one history row per layer on the `layer` axis) leave no last-layer
value in the summary: the summary holds their mean over layers (`<key>/mean`) and for SNR the
worst layer (`<key>/min`), computed from all layers of the run, resumed or not.

The run config is logged flat, under the dotted keys the sweep files use (`prune.method`,
`data.calibration_language`): inside a W&B sweep the agent's parameters and the run's own config
are then the same columns of the run table, not two copies (one flat, one nested).
"""

from __future__ import annotations

import hashlib
import logging
import math
import netrc
import os
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lightning.pytorch.loggers import Logger, WandbLogger

from lp_prune.config import WandbConfig
from lp_prune.errors import ConfigError
from lp_prune.storage.files import checked_folder, copy_file
from lp_prune.tracking.run_dir import RunDirectory

log = logging.getLogger(__name__)

PUBLIC_HOST = "https://api.wandb.ai"  # only a fallback: wandb itself knows its default host
MASKS_ARTIFACT_TYPE = "pruning-masks"
DOWNLOADED_RUN_FILE = "wandb-run.json"  # which W&B run (and masks artifact) a downloaded folder came from
PRUNE_JOB = "prune"
LAYER_AXIS = "layer"
PER_LAYER = "prune/*"  # the keys logged once per layer


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"prune": {"method": "wanda"}} -> {"prune.method": "wanda"}: the dotted keys of the sweep files.

    Lists stay values (`data.eval_languages: [en, sw]`); an empty mapping stays a value as well, so
    `nested_config` gives the same dict back.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_config(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def nested_config(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of `flat_config` (nested input passes as it is); W&B's own `_...` keys are left out."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if key.startswith("_"):
            continue
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


# ---------------------------------------------------------------------------------------------------
# Online or offline: credentials for the W&B server this machine talks to


def _wandb_settings() -> Any:
    """wandb's settings as wandb.init would load them (its settings file, then WANDB_* variables), read
    afresh and without starting wandb's session: that reads the environment once and keeps it."""
    from wandb import Settings

    settings = Settings(quiet=True)  # wandb.init says itself which settings files it loads
    config_dir = os.environ.get("WANDB_CONFIG_DIR")
    folder = Path(config_dir).expanduser() if config_dir else Path("~", ".config", "wandb").expanduser()
    settings.settings_system = str(folder / "settings")
    settings.update_from_system_settings()
    settings.update_from_env_vars(dict(os.environ))
    return settings


def wandb_host() -> str:
    """The W&B server wandb.init would use: WANDB_BASE_URL, else the host `wandb login --host` saved
    in wandb's settings file, else wandb's own default."""
    try:
        return str(_wandb_settings().base_url).rstrip("/")
    except Exception:  # another wandb version: the variable, else the public host
        return os.environ.get("WANDB_BASE_URL", PUBLIC_HOST).rstrip("/")


def credentials_source(host: str | None = None) -> str | None:
    """Where wandb would find credentials for `host` (default: `wandb_host()`), or None.

    In wandb's own order (wandb.sdk.lib.wbauth): `wandb.login()` earlier in this process,
    WANDB_API_KEY or WANDB_IDENTITY_TOKEN_FILE, the netrc entry `wandb login` wrote for that host,
    an api_key in wandb's settings file. Never prompts, never touches the network (no key check).
    """
    host = host or wandb_host()
    try:
        from wandb.sdk.lib import wbauth
    except ImportError:  # an older wandb: the variable, else the host's netrc entry
        return "WANDB_API_KEY" if os.environ.get("WANDB_API_KEY") else ("netrc" if _netrc_has(host) else None)
    try:
        if wbauth.session_credentials(host=host) is not None:
            return "wandb.login()"
        for variable in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
            if os.environ.get(variable):
                return variable
        if wbauth.read_netrc_auth(host=host):
            return "netrc"
        settings = _wandb_settings()
        if settings.api_key and wbauth.HostUrl(host).is_same_url(settings.base_url):
            return "settings"
    except Exception as error:  # e.g. a malformed key in the netrc file: wandb.init would fail on it
        log.warning("W&B credentials for %s cannot be used (%s); logging offline", host, error)
    return None


def _netrc_has(host: str) -> bool:
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(urlsplit(host).netloc) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def has_wandb_credentials() -> bool:
    return credentials_source() is not None


def resolve_mode(config: WandbConfig) -> str:
    """auto -> WANDB_MODE if the user set it, else online with credentials and offline without.

    wandb.init rejects an unknown WANDB_MODE even when it is given a mode of its own, so one is
    refused here whenever W&B will be used; so is online without an API key (wandb.init would stop the run
    after the model has loaded).
    """
    known = ("online", "offline", "disabled", "dryrun", "shared", "run")  # wandb 0.31's Settings.mode
    variable = os.environ.get("WANDB_MODE")
    if config.mode == "disabled":
        return config.mode
    if variable is not None and variable not in known:  # wandb rejects an empty one as well
        raise ConfigError(f"WANDB_MODE '{variable}' (environment) is not one of: {', '.join(known)}")
    mode = config.mode if config.mode != "auto" else variable or ("online" if has_wandb_credentials() else "offline")
    if mode == "online" and not has_wandb_credentials():
        where = "wandb.mode" if config.mode == "online" else "WANDB_MODE (environment)"
        raise ConfigError(
            f"{where} online needs a W&B API key and none is set up: run wandb login or set WANDB_API_KEY, "
            "or use --wandb.mode offline (wandb sync later)"
        )
    return mode


def make_wandb_logger(
    config: WandbConfig, save_dir: Path, run_config: Mapping[str, Any], run_id: str | None = None
) -> WandbLogger | None:
    """The pruning run's W&B run (job type `prune`) as a Lightning logger; `run_id` continues that run.

    The run is started here rather than by WandbLogger, which would pass wandb 0.31 a deprecated
    `anonymous` setting (a warning on every run) and make `*` a global-step metric.
    """
    import wandb

    mode = resolve_mode(config)
    if mode == "disabled":
        return None
    save_dir = Path(save_dir).resolve()  # wandb's service may run in another folder than this process
    settings = dict(
        project=config.project,
        name=config.name,
        group=config.group,
        tags=list(config.tags) or None,
        dir=str(save_dir),
        config=flat_config(run_config),
        mode=mode,
        job_type=PRUNE_JOB,
    )
    try:
        run = wandb.init(**settings, id=run_id, resume="allow" if run_id else None)
    except Exception as error:
        # The killed attempt's run is still open in a wandb service this process shares (one started
        # by a parent process that uses wandb itself): go on as a new W&B run rather than fail.
        if run_id is None or "in use" not in str(error):
            raise
        log.warning("W&B run %s is still open in another process (%s); this part logs as a new run", run_id, error)
        run = wandb.init(**settings)
    # Calibration runs inside trainer.validate, where global_step stays 0: layers are the x-axis. The
    # summary of a per-layer key would be its last layer's value: `layer_summary` writes the means.
    run.define_metric(LAYER_AXIS, summary="none")
    run.define_metric(PER_LAYER, step_metric=LAYER_AXIS, summary="none")
    return WandbLogger(experiment=run, save_dir=str(save_dir), project=config.project, name=config.name)


def run_id(loggers: Sequence[Logger]) -> str | None:
    """The id of the W&B run the loggers write to, or None without W&B."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            return str(logger.experiment.id)
    return None


def layer_summary(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Summary values of per-layer metrics: each key's mean over the layers that logged it
    (`prune/snr_db/o_proj/mean`) and, for SNR, its worst layer (`prune/snr_db/o_proj/min`)."""
    values: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key != LAYER_AXIS:
                values.setdefault(key, []).append(float(value))
    summary: dict[str, float] = {}
    for key, series in values.items():
        summary[f"{key}/mean"] = _mean(series)
        if "snr_db" in key:
            summary[f"{key}/min"] = min(series, key=lambda v: (not math.isnan(v), v))  # NaN counts as worst
    return summary


def _mean(series: list[float]) -> float:
    try:
        return statistics.fmean(series)  # a NaN gives NaN, an infinite SNR (no error) gives inf
    except ValueError:  # inf and -inf together
        return math.nan


def log_table(loggers: Sequence[Logger], key: str, columns: list[str], rows: list[list[Any]]) -> None:
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_table(key=key, columns=columns, data=rows)


def update_summary(loggers: Sequence[Logger], values: Mapping[str, Any]) -> None:
    """Final numbers (perplexity per language, overall sparsity) into the run summary."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(dict(values))
        else:
            logger.log_metrics({k: v for k, v in values.items() if isinstance(v, int | float)})


_ARTIFACT_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def artifact_name(prefix: str, folder_name: str) -> str:
    """A W&B artifact name (letters, digits, '-', '_', '.') for a run folder of any name: spaces and
    other characters become '_', and a short hash of the real name keeps two such folders apart."""
    safe = _ARTIFACT_UNSAFE.sub("_", folder_name).strip("_.") or "run"
    if safe == folder_name:
        return f"{prefix}-{safe}"
    digest = hashlib.sha1(folder_name.encode("utf-8")).hexdigest()[:8]
    return f"{prefix}-{safe[:100]}-{digest}"


def log_masks_artifact(loggers: Sequence[Logger], masks_path: Path, name: str) -> None:
    """The bit-packed masks as a W&B artifact of type 'pruning-masks', with the run's summary.json and
    config.yaml beside them when they are written: `lp-prune compare wandb:...` rebuilds the run
    directory from it on any machine (tracking.wandb_runs).

    Every file the artifact names lies in the run directory: the masks file by immutable reference (W&B
    would otherwise stage a copy in $HOME, ~0.9 GB for an 8B model), the companions as they were when
    logged in wandb/artifact-files/ (`lp-prune eval` rewrites summary.json later). An offline run
    directory therefore syncs with everything it logged. The paths are absolute: a relative --out would
    otherwise leave paths in the manifest that only resolve from the folder the run started in."""
    import wandb

    masks_path = Path(masks_path).resolve()
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            artifact = wandb.Artifact(name=name, type=MASKS_ARTIFACT_TYPE)
            artifact.add_file(str(masks_path), policy="immutable")
            for path in _artifact_companions(masks_path.parent):
                artifact.add_file(str(path), policy="immutable")
            logger.experiment.log_artifact(artifact)
            run_dir = RunDirectory(masks_path.parent)
            if run_dir.is_marked():  # what compare and analyze name as their input (lineage)
                run_dir.record_wandb(masks_artifact=name)


ARTIFACT_FILES_DIR = Path("wandb") / "artifact-files"


def _artifact_companions(run_root: Path) -> list[Path]:
    """summary.json and config.yaml copied to the run's wandb/artifact-files/, so that the files the
    artifact references keep the content it was logged with."""
    folder = run_root / ARTIFACT_FILES_DIR
    copies = []
    for source in (run_root / "summary.json", run_root / "config.yaml"):
        if source.is_file():
            copy = checked_folder(folder, run_root) / source.name  # never through a link planted in the run
            copy_file(source, copy)
            copies.append(copy)
    return copies


def finish(loggers: Sequence[Logger], status: str = "success") -> None:
    for logger in loggers:
        logger.finalize(status)
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=0 if status == "success" else 1)


def online_url(loggers: Sequence[Logger]) -> str | None:
    """The URL of the run's W&B page when it logs online; None offline or without W&B."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and not getattr(logger.experiment, "offline", True):
            return logger.experiment.url
    return None
