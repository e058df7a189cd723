"""What counts as "the same setting": a run's whole configuration minus its calibration recipe, its
calibration draw and the keys that only say where and how the work ran. Derived from the config,
never hand-listed, so a sweep over any result-relevant key (prune.owl, prune.blocksize, model.dtype,
data.eval_windows, ...) gives settings, never repeats of one recipe.

    key = setting_key(config, calibrates=True)    # a hashable tuple of (dotted key, value)
    labels = setting_labels({key: "sparsegpt unstructured s=0.5 n=32x256", ...})
    # settings sharing a base label are told apart by the keys whose values differ: "... owl=true"
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from lp_prune.storage.files import to_jsonable
from lp_prune.tracking.fingerprint import RUNTIME_KEYS, flat

SettingKey = tuple[tuple[str, str], ...]

# The calibration recipe: what the run calibrates on (a row of the tables), not the setting.
RECIPE_KEYS = (
    "data.calibration_language",
    "data.source",
    "data.files",
    "data.token_file",
    "data.generation",
    "prune.statistics",
    "prune.language_weights",
)
# The calibration draw: runs that differ only here are repeats of one recipe.
DRAW_KEYS = ("seed", "data.seed", "data.shuffle_buffer")
# Beyond the resume fingerprint's runtime keys: what is saved, batching, memory placement, paths.
WORK_KEYS = (
    *RUNTIME_KEYS,
    "save_model",
    "save_shard_size",
    "checkpoint",
    "offload_layers",
    "activations",
    "compile_layers",
    "data.batch_size",
    "data.eval_batch_size",
    "data.reference_files",
    "eval.batch_size",
    "eval.cache_dense",
    "eval.include_path",
    "model.trust_remote_code",
)
# Keys a method without calibration data never reads (RTN, magnitude).
CALIBRATION_SIZE_KEYS = ("data.nsamples", "data.seqlen")


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def setting_key(config: Any, calibrates: bool = True) -> SettingKey:
    """The run's result-relevant configuration: every dotted key but the recipe, draw and work keys."""
    values = flat(to_jsonable(config.to_dict()))
    left_out = RECIPE_KEYS + DRAW_KEYS + WORK_KEYS + (() if calibrates else CALIBRATION_SIZE_KEYS)
    return tuple(
        (key, json.dumps(value, sort_keys=True)) for key, value in sorted(values.items()) if not _under(key, left_out)
    )


def differing_keys(keys: list[SettingKey]) -> list[str]:
    """The dotted keys whose values are not the same in all of `keys`."""
    maps = [dict(key) for key in keys]
    names = list(dict.fromkeys(name for m in maps for name in m))
    return [name for name in names if len({m.get(name) for m in maps}) > 1]


def setting_labels(base: Mapping[SettingKey, str]) -> dict[SettingKey, str]:
    """A label per setting: its base label, and where several settings share one, the keys that tell
    them apart ('sparsegpt unstructured s=0.5 n=32x256 owl=true')."""
    by_label: dict[str, list[SettingKey]] = defaultdict(list)
    for key, label in base.items():
        by_label[label].append(key)
    out: dict[SettingKey, str] = {}
    for label, keys in by_label.items():
        if len(keys) == 1:
            out[keys[0]] = label
            continue
        names = differing_keys(keys)
        short = _short_names(names)
        for key in keys:
            values = dict(key)
            parts = [f"{short[name]}={_show(values.get(name))}" for name in names]
            out[key] = f"{label} {' '.join(parts)}"
    return out


def _short_names(names: list[str]) -> dict[str, str]:
    """'prune.owl' -> 'owl' where the last part is unique among `names`, else the dotted key."""
    last = [name.rsplit(".", 1)[-1] for name in names]
    return {name: tail if last.count(tail) == 1 else name for name, tail in zip(names, last, strict=True)}


def _show(value: str | None) -> str:
    if value is None:
        return "unset"
    loaded = json.loads(value)
    if isinstance(loaded, bool) or loaded is None:
        return json.dumps(loaded)
    return str(loaded) if not isinstance(loaded, list | dict) else value.replace(" ", "")
