"""What a run was started with, kept in its marker, so that --resume never mixes two configurations.

A resumed run replays the saved layers and prunes the rest with the config and model it is given:
if either differs from the start (config.yaml edited, other flags, another model folder), the
result would be half one run and half another. `check_resumable` refuses that with one line
naming what differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lp_prune.config.code_options import CODE_OPTIONS, describe, flag, normal, requests, value_of
from lp_prune.errors import UserError
from lp_prune.storage.files import to_jsonable
from lp_prune.tracking.run_dir import RunDirectory

if TYPE_CHECKING:
    from lp_prune.config import RunConfig

# Keys that say where and how the work runs, or which extra copies it writes, not what it computes
# (results are split-independent).
RUNTIME_KEYS = (
    "out",
    "overwrite",
    "save_compressed",
    "wandb",
    "devices",
    "num_nodes",
    "strategy",
    "accelerator",
    "check_memory",
)
MODEL_SHAPE_KEYS = (
    "model_type",
    "num_hidden_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
)


def flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'prune': {'sparsity': 0.5}} -> {'prune.sparsity': 0.5}."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def model_shape(model_config: Any) -> dict[str, Any]:
    """The architecture facts saved layers depend on, from a transformers config."""
    text = getattr(model_config, "text_config", None) or model_config
    return to_jsonable({key: getattr(text, key, None) for key in MODEL_SHAPE_KEYS})


def started_with(config: RunConfig, model_config: Any) -> dict[str, Any]:
    return {
        "config": to_jsonable(config.to_dict()),
        "model": model_shape(model_config),
        "weights": weights_fingerprint(model_config),
    }


SAMPLE_BYTES = 1 << 16  # bytes read at the start, middle and end of each weight file


def weights_fingerprint(model_config: Any) -> dict[str, str]:
    """Per weight file of a local model folder: a SHA-256 of its size, its safetensors header (names,
    shapes, dtypes, offsets) and three 64 KiB samples of its data, so that weights replaced by others
    of the same shapes are told apart without reading the whole model. {} for a Hub id or a folder
    without safetensors files."""
    folder = Path(str(getattr(model_config, "_name_or_path", "") or ""))
    if not folder.is_dir():
        return {}
    out = {}
    for path in sorted(folder.glob("*.safetensors")):
        digest = hashlib.sha256()
        size = path.stat().st_size
        digest.update(str(size).encode())
        with path.open("rb") as handle:
            header = handle.read(8)
            digest.update(header)
            if len(header) == 8:
                digest.update(handle.read(min(int.from_bytes(header, "little"), size)))
            for offset in (0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)):
                handle.seek(offset)
                digest.update(handle.read(SAMPLE_BYTES))
        out[path.name] = digest.hexdigest()
    return out


def run_key(run_dir: RunDirectory) -> str:
    """A short key of what decides the run's pruned layers (its start's config less the runtime keys and
    the evaluation section, its model's shape and weight files): saved layers carry it, so that another
    run's layer of the same shapes is never replayed into this one ('' outside a run directory)."""
    if not run_dir.is_marked():
        return ""
    started = to_jsonable(run_dir.read_marker().get("started_with") or {})
    config = {key: value for key, value in (started.get("config") or {}).items() if key not in (*RUNTIME_KEYS, "eval")}
    if isinstance(config.get("model"), dict):  # whether code may run is this invocation's to say, not the run's
        config["model"] = {key: value for key, value in config["model"].items() if key != "trust_remote_code"}
    model = {key: value for key, value in started.items() if key != "config"}
    text = json.dumps({"config": config, **model}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """The dotted keys whose values differ, keys under `ignore` left out."""
    old, new = flat(to_jsonable(before)), flat(to_jsonable(after))
    keys = [key for key in dict.fromkeys([*old, *new]) if not _under(key, ignore)]
    return [key for key in keys if old.get(key) != new.get(key)]


def differences(before: Mapping[str, Any], after: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """'key: old -> new' for every dotted key whose value differs, keys under `ignore` left out."""
    old, new = flat(to_jsonable(before)), flat(to_jsonable(after))
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in changed_keys(before, after, ignore)]


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def check_resumable(run_dir: RunDirectory, config: RunConfig, model_config: Any) -> None:
    """Refuse to resume with a config or a model other than the run's own at its start."""
    saved = run_dir.read_marker().get("started_with") or {}
    if not saved:
        raise UserError(f"--resume {run_dir.root}: no run was started there; start one with --out {run_dir.root}")
    changed = differences(read_by(config, saved.get("config", {})), config.to_dict(), ignore=RUNTIME_KEYS)
    if changed:
        raise UserError(
            f"--resume {run_dir.root}: the config differs from the one the run started with "
            f"({'; '.join(changed)}); restore config.yaml, or start a new run"
        )
    other_model = differences(saved.get("model", {}), model_shape(model_config))
    if "weights" in saved and saved["weights"] != weights_fingerprint(model_config):
        other_model.append("its weight files differ from the ones the run started with")
    if other_model:
        raise UserError(
            f"--resume {run_dir.root}: model {config.model.name} is not the one the run started with "
            f"({'; '.join(other_model)})"
        )


def read_by(config: RunConfig, started: Mapping[str, Any]) -> dict[str, Any]:
    """A run's starting config less the prune keys that `config`'s method does not read: a run started
    before a method's settings were its own recorded every method's (prune.bits for sparsegpt)."""
    started = dict(started)
    if isinstance(started.get("prune"), Mapping):
        read = config.to_dict()["prune"]
        started["prune"] = {key: value for key, value in started["prune"].items() if key in read}
    return started


def check_resume_flags(run_dir: RunDirectory, saved: RunConfig, given: RunConfig, defaults: RunConfig) -> None:
    """Flags beside --resume may repeat the run's values but not change them (the run goes on as it started).

    A flag counts as given when its value differs from the default. Options that run code are the
    exception (config.code_options): never taken from the run folder, only from this command line, so a
    run started with one is refused unless the command line asks for the same again.
    """
    given_keys = changed_keys(defaults.to_dict(), given.to_dict())
    wanted, had = flat(to_jsonable(given.to_dict())), flat(to_jsonable(saved.to_dict()))
    contradicted = [
        f"{key} {wanted[key]!r} (run: {had.get(key)!r})"
        for key in given_keys
        if key in wanted and key not in ("out", *CODE_OPTIONS) and wanted[key] != had.get(key)
    ]
    for key in CODE_OPTIONS:
        asked, started = normal(key, value_of(given, key)), normal(key, value_of(saved, key))
        if asked and asked != started:
            contradicted.append(f"{key} {asked!r} (run: {started!r})")
    if given.out is not None and str(given.out) != str(run_dir.root):
        contradicted.append(f"out {given.out!r} (run: {str(run_dir.root)!r})")
    if contradicted:
        raise UserError(
            f"--resume {run_dir.root} continues the run as it was started; these flags differ from it: "
            f"{', '.join(sorted(contradicted))}"
        )
    for key, value in requests(saved).items():
        if normal(key, value_of(given, key)) != normal(key, value):
            raise UserError(
                f"--resume {run_dir.root}: the run was started with {describe(key, value)}, which "
                f"{CODE_OPTIONS[key]}; a run folder does not ask for code: pass {flag(key, value)} to allow it "
                "in this invocation"
            )
