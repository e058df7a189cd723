"""The config hub: the YAML configs and W&B sweep files that ship inside the package.

They live in `lp_prune/config_hub/` as `configs/...` (run configs, recipes, model shapes) and
`sweeps/...` (sweep files), and are named by those paths from any folder:

    lp-prune run --config configs/default.yaml      # in a clone, in /tmp, in a W&B agent's folder

A path that exists relative to the working folder always wins, so a folder of one's own configs/
keeps working; only when it does not exist does a `configs/` or `sweeps/` path read the packaged copy.
"""

from __future__ import annotations

import os
from pathlib import Path

HUB = Path(__file__).resolve().parent.parent / "config_hub"
HUB_FOLDERS = ("configs", "sweeps")


def packaged(path: str | os.PathLike[str]) -> Path | None:
    """The packaged file a `configs/...` or `sweeps/...` path names, or None (another path, or no such file)."""
    parts = Path(path).parts
    if len(parts) < 2 or parts[0] not in HUB_FOLDERS:
        return None
    candidate = HUB.joinpath(*parts)
    inside = HUB in candidate.resolve().parents  # configs/../.. names nothing in the hub
    return candidate if inside and candidate.is_file() else None


def resolve(path: str) -> str:
    """`path` itself when it exists here (or names nothing in the hub), else its packaged copy."""
    if os.path.exists(path):
        return path
    found = packaged(path)
    return str(found) if found is not None else path
