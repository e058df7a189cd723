"""Switching the Hugging Face Hub off for a block of work, e.g. an evaluation whose tasks are all local."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


@contextlib.contextmanager
def hub_offline(enabled: bool = True) -> Iterator[None]:
    """Switch the Hugging Face Hub off (and restore it after) when every task is local.

    The environment variables alone are not enough: huggingface_hub and datasets read them once, at
    import, into module constants that they check at request time, so those are set as well.
    """
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    offline_values = [
        (huggingface_hub.constants, "HF_HUB_OFFLINE", True),
        (datasets.config, "HF_HUB_OFFLINE", True),
        (datasets.config, "HF_DATASETS_OFFLINE", True),
        (datasets.config, "HF_UPDATE_DOWNLOAD_COUNTS", False),  # datasets pings S3 on every load
    ]
    saved_env = {name: os.environ.get(name) for name in _OFFLINE_ENV}
    saved = [(module, name, getattr(module, name)) for module, name, _ in offline_values]
    os.environ.update(dict.fromkeys(_OFFLINE_ENV, "1"))
    for module, name, value in offline_values:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
