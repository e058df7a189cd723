"""`lp-prune configs`: the configs and sweep files that ship with lp_prune, one line each.

    lp-prune configs
    lp-prune run --config configs/smoke.yaml         # any listed path works from any folder
    lp-prune sweep sweeps/languages-default.yaml

A file of the same path in the working folder is read instead of the packaged one (config.hub).
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from lp_prune.commands import COMMANDS
from lp_prune.config.hub import HUB, HUB_FOLDERS, description, hub_files

HELP = COMMANDS["configs"]
HEADINGS = {
    "configs": "Configs (lp-prune run --config FILE; later --config files override earlier ones):",
    "sweeps": 'Sweeps (lp-prune sweep FILE; wandb sweep "$(lp-prune sweep FILE --where)"):',
}


def add_arguments(parser: ArgumentParser) -> None:
    pass


def execute(namespace: Namespace) -> int:
    print(listing())
    return 0


def listing() -> str:
    files = hub_files()
    width = max(map(len, files), default=0)
    lines = [f"In {HUB}, named by these paths from any folder (a file of the same path here is read instead)."]
    for folder in HUB_FOLDERS:
        lines += ["", HEADINGS[folder]]
        for name in files:
            if name.startswith(f"{folder}/"):
                lines.append(f"  {name:<{width}}  {description(HUB / name)}".rstrip())
    return "\n".join(lines)
