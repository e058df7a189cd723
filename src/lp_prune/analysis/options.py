"""Options of `lp-prune analyze`: which held-out text, how much of it, and the analyses' parameters."""

from __future__ import annotations

from dataclasses import dataclass, field

from lp_prune.config import LANGUAGES, check_language
from lp_prune.errors import ConfigError


@dataclass
class AnalyzeOptions:
    languages: list[str] = field(default_factory=lambda: list(LANGUAGES))
    windows: int = 4  # held-out windows per language
    seqlen: int = 128
    batch_size: int = 4
    lsar_rank: int | None = None  # default: number of languages - 1
    lape_top_rate: float = 0.01
    lape_bar: float = 0.95
    include_bos: bool = False

    def validate(self) -> None:
        for lang in self.languages:
            check_language(lang, "--languages")
        if len(set(self.languages)) < 2:
            raise ConfigError("--languages needs at least two languages (LSAR and LAPE compare languages)")
        for key, low in (("windows", 1), ("seqlen", 2), ("batch_size", 1)):
            if getattr(self, key) < low:
                raise ConfigError(f"--{key} must be at least {low}, got {getattr(self, key)}")
        top = len(set(self.languages)) - 1
        if self.lsar_rank is not None and not 1 <= self.lsar_rank <= top:
            raise ConfigError(f"--lsar_rank must lie in [1, {top}] for {top + 1} languages, got {self.lsar_rank}")
        for key in ("lape_top_rate", "lape_bar"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise ConfigError(f"--{key} must lie in (0, 1), got {getattr(self, key)}")
