"""Options of `lp-prune analyze`: which runs, which held-out text and how much of it, the analyses'
parameters, and where the report and the W&B run go."""

from __future__ import annotations

from dataclasses import dataclass, field

from lp_prune.errors import ConfigError
from lp_prune.languages import LANGUAGES, check_known_language


@dataclass
class AnalyzeOptions:
    """Options of `lp-prune analyze`."""

    runs: list[str] = field(default_factory=list)
    """Run directories and/or sweep folders (one model)."""
    languages: list[str] = field(default_factory=lambda: list(LANGUAGES))
    """Evaluation languages (the seven; with runs on mC4 or local files any mC4 code)."""
    windows: int = 4
    """Held-out windows per language."""
    seqlen: int = 128
    """Tokens per window (BOS included)."""
    batch_size: int = 4
    """Windows per forward pass."""
    lsar_rank: int | None = None
    """LSAR subspace rank (default: number of languages - 1)."""
    lape_top_rate: float = 0.01
    """Share of all FFN neurons selected by LAPE."""
    lape_bar: float = 0.95
    """Percentile of all activation probabilities."""
    include_bos: bool = False
    """Count the BOS position in the statistics."""
    trust_remote_code: bool = False
    """Let transformers run the model folder's own Python code; only this flag allows it, never a run's
    config.yaml."""
    out: str | None = None
    """Report folder, never inside a run directory (default: <first>/analysis for a sweep folder, else
    ./analysis/<names of the analysed folders>)."""
    wandb_project: str | None = None
    """Project of the analysis run (default: the runs')."""
    wandb_group: str | None = None
    """Group of the analysis run (default: the runs')."""
    no_wandb: bool = False
    """Do not log an analysis run to W&B."""

    def validate(self) -> None:
        for lang in self.languages:
            check_known_language(lang, "--languages")
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
