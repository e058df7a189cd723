"""The config hub: the YAML configs and W&B sweep files that ship with lp_prune.

They live at the repository's top level as `configs/...` (run configs, recipes, model shapes) and
`sweeps/...` (sweep files); the wheel carries them as `lp_prune/config_hub/configs` and
`lp_prune/config_hub/sweeps` (setup.py's build step). Either way they are named by those paths from
any folder:

    lp-prune run --config configs/default.yaml      # in a clone, in /tmp, in a W&B agent's folder

A path that exists relative to the working folder always wins, so a folder of one's own configs/
keeps working; only when it does not exist does a `configs/` or `sweeps/` path read the packaged copy.
`lp-prune configs` lists them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

HUB_FOLDERS = ("configs", "sweeps")
PACKAGE = Path(__file__).resolve().parent.parent  # lp_prune/
DESCRIPTION_WIDTH = 100  # characters of a description in the listing


def hub_root(package: Path = PACKAGE) -> Path:
    """The folder that holds configs/ and sweeps/: the repository's top level when lp_prune runs from
    its source checkout (an editable install, PYTHONPATH=src), else the copy inside the installed package."""
    checkout = package.parent.parent
    from_source = package.parent.name == "src" and (checkout / "pyproject.toml").is_file()
    if from_source and all((checkout / folder).is_dir() for folder in HUB_FOLDERS):
        return checkout
    return package / "config_hub"


HUB = hub_root()


def packaged(path: str | os.PathLike[str]) -> Path | None:
    """The packaged file a `configs/...` or `sweeps/...` path names, or None (another path, or no such file)."""
    parts = Path(path).parts
    if len(parts) < 2 or parts[0] not in HUB_FOLDERS:
        return None
    candidate = HUB.joinpath(*parts)
    inside = (HUB / parts[0]).resolve() in candidate.resolve().parents  # configs/../.. names nothing in the hub
    return candidate if inside and candidate.is_file() else None


def resolve(path: str) -> str:
    """`path` itself when it exists here (or names nothing in the hub), else its packaged copy."""
    if os.path.exists(path):
        return path
    found = packaged(path)
    return str(found) if found is not None else path


def hub_files(root: Path = HUB) -> list[str]:
    """Every file of the hub by the path that names it (`configs/default.yaml`), sorted."""
    return sorted(
        path.relative_to(root).as_posix()
        for folder in HUB_FOLDERS
        for path in (root / folder).rglob("*")
        if path.is_file()
    )


def description(path: Path) -> str:
    """One line about a hub file: a sweep's `description:`, else the first sentence of the YAML's opening
    comment; for a model shape (JSON), its architecture and size. Empty when the file says nothing."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return f"(unreadable: {err})"
    line = _json_summary(text) if path.suffix == ".json" else _yaml_description(text)
    return _shortened(" ".join(line.split()))


def _yaml_description(text: str) -> str:
    field = re.search(r"^description:[ \t]*(.+)$", text, re.MULTILINE)
    if field:
        import yaml

        try:
            value = yaml.safe_load(field.group(1))
        except yaml.YAMLError:
            value = None
        if isinstance(value, str) and value.strip():
            return value
    comment: list[str] = []
    for line in text.splitlines():
        body = line[1:] if line.startswith("#") else None
        if body is None or not body.strip() or body.startswith("   "):  # the block ends at a blank or usage line
            break
        comment.append(body.strip())
    opening = " ".join(comment)
    sentence = re.match(r"(.+?[.?!])(?:\s|$)", opening)
    return sentence.group(1) if sentence else opening


def _json_summary(text: str) -> str:
    try:
        shape = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(shape, dict):
        return ""
    if isinstance(shape.get("description"), str):
        return shape["description"]
    architecture = (shape.get("architectures") or [shape.get("model_type", "model")])[0]
    sizes = [
        f"{shape[key]} {label}"
        for key, label in (("num_hidden_layers", "layers"), ("hidden_size", "hidden"), ("vocab_size", "vocab"))
        if key in shape
    ]
    return f"Model shape for `estimate --shape`: {architecture}" + (f", {', '.join(sizes)}" if sizes else "")


def _shortened(line: str, width: int = DESCRIPTION_WIDTH) -> str:
    if len(line) <= width:
        return line
    return line[: width - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"
