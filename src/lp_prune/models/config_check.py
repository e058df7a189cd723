"""A model's config.json checked before transformers builds anything from it, and against its weights.

transformers fills a missing `hidden_size` or `num_hidden_layers` with its defaults for the
architecture (a 4096-wide, 32-layer model for a tiny folder), divides by `num_attention_heads`
without looking, and passes a JSON list to a constructor as keyword arguments. Each of these is one
line here, naming the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lp_prune.errors import ModelLoadError

REQUIRED = ("hidden_size", "num_hidden_layers", "vocab_size")
POSITIVE = (*REQUIRED, "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim")
MAX_CONFIG_BYTES = 16 << 20  # a config.json is a few kB


def read_config_json(path: Path, what: str) -> dict[str, Any]:
    """The settings of a config.json, or a ModelLoadError naming `what` (a model or --shape)."""
    try:
        info = path.stat()
        if not path.is_file():
            raise ModelLoadError(f"{what}: {path} is not a regular file")
        if info.st_size > MAX_CONFIG_BYTES:
            raise ModelLoadError(f"{what}: {path} is {info.st_size:,} bytes; not a model's config.json")
        values = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        detail = " ".join(str(err).split())[:120]
        raise ModelLoadError(f"{what}: {path} is not a readable model config.json (not valid JSON: {detail})") from None
    except OSError as err:
        raise ModelLoadError(f"{what}: cannot read {path}: {err.strerror or err}") from None
    if not isinstance(values, dict):
        raise ModelLoadError(f"{what}: {path} holds a JSON {_json_kind(values)}, not an object of model settings")
    check_config_values(values, what)
    return values


def check_config_values(values: dict[str, Any], what: str) -> None:
    """Sizes present (for a text model's own config) and positive whole numbers; heads that divide."""
    section = values.get("text_config") if isinstance(values.get("text_config"), dict) else values
    aliases = _attribute_map(values.get("model_type"))

    def named(key: str) -> str | None:
        return next((name for name in (key, aliases.get(key)) if name and name in section), None)

    if section is values:
        missing = [key for key in REQUIRED if named(key) is None]
        if missing:
            raise ModelLoadError(
                f"{what}: config.json names no {', '.join(missing)} (transformers would fill in its defaults for the "
                "architecture instead)"
            )
    for key in POSITIVE:
        name = named(key)
        value = section.get(name) if name else None
        if name is None or (value is None and key in ("head_dim", "num_key_value_heads")):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelLoadError(f"{what}: config.json sets {name} to {value!r}; it must be a positive whole number")
    heads, kv_heads = section.get(named("num_attention_heads") or ""), section.get(named("num_key_value_heads") or "")
    if isinstance(heads, int) and isinstance(kv_heads, int) and heads % kv_heads:
        raise ModelLoadError(
            f"{what}: config.json sets {heads} attention heads and {kv_heads} key-value heads; "
            "the key-value heads must divide the attention heads"
        )


def _attribute_map(model_type: Any) -> dict[str, str]:
    """transformers' other names for the standard keys (GPT-2 writes n_embd for hidden_size)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        return {}
    return dict(getattr(CONFIG_MAPPING[model_type], "attribute_map", {}) or {})


def _json_kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")


def check_weight_shapes(name: str, weight_files: list[Path], skeleton: Any) -> None:
    """Every tensor of the safetensors files that the model built from config.json also has, has the shape
    the config gives it (an `intermediate_size` the weights disagree with stops here, not in the load).
    Only the headers are read; a file whose header cannot be read is left to the damage check."""
    expected = {key: tuple(tensor.shape) for key, tensor in skeleton.state_dict().items()}
    for path in weight_files:
        if path.suffix != ".safetensors":
            continue
        for key, shape in _safetensors_shapes(path).items():
            if key in expected and expected[key] != shape:
                raise ModelLoadError(
                    f"model '{name}': config.json and the weights disagree: {key} is {list(shape)} in {path.name}, "
                    f"but the config makes it {list(expected[key])}"
                )


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= min(path.stat().st_size - 8, 100_000_000):
                return {}
            header = json.loads(handle.read(length))
        return {
            key: tuple(int(size) for size in entry["shape"]) for key, entry in header.items() if key != "__metadata__"
        }
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return {}
