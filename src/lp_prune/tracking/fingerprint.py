"""What a run was started with, kept in its marker, so that --resume never mixes two configurations.

A resumed run replays the saved layers and prunes the rest with the config and model it is given:
if either differs from the start (config.yaml edited, other flags, another model folder), the
result would be half one run and half another. `check_resumable` refuses that with one line
naming what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lp_prune.errors import UserError
from lp_prune.tracking.files import to_jsonable
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
    return {"config": to_jsonable(config.to_dict()), "model": model_shape(model_config)}


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
    changed = differences(saved.get("config", {}), config.to_dict(), ignore=RUNTIME_KEYS)
    if changed:
        raise UserError(
            f"--resume {run_dir.root}: the config differs from the one the run started with "
            f"({'; '.join(changed)}); restore config.yaml, or start a new run"
        )
    other_model = differences(saved.get("model", {}), model_shape(model_config))
    if other_model:
        raise UserError(
            f"--resume {run_dir.root}: model {config.model.name} is not the one the run started with "
            f"({'; '.join(other_model)})"
        )


def check_resume_flags(run_dir: RunDirectory, saved: RunConfig, given: RunConfig, defaults: RunConfig) -> None:
    """Flags beside --resume may repeat the run's values but not change them (the run goes on as it started).

    A flag counts as given when its value differs from the default; code execution is the exception:
    `model.trust_remote_code` is never taken from a file read back, only from this command line.
    """
    given_keys = changed_keys(defaults.to_dict(), given.to_dict())
    wanted, had = flat(to_jsonable(given.to_dict())), flat(to_jsonable(saved.to_dict()))
    contradicted = [
        f"{key} {wanted[key]!r} (run: {had.get(key)!r})"
        for key in given_keys
        if key not in ("model.trust_remote_code", "out") and wanted[key] != had.get(key)
    ]
    if given.out is not None and str(given.out) != str(run_dir.root):
        contradicted.append(f"out {given.out!r} (run: {str(run_dir.root)!r})")
    if contradicted:
        raise UserError(
            f"--resume {run_dir.root} continues the run as it was started; these flags differ from it: "
            f"{', '.join(sorted(contradicted))}"
        )
    if saved.model.trust_remote_code and not given.model.trust_remote_code:
        raise UserError(
            f"--resume {run_dir.root}: the run was started with model.trust_remote_code true, which runs the "
            "model folder's own Python code; pass --model.trust_remote_code true to allow it in this invocation"
        )
