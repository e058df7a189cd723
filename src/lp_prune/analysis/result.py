"""analysis.json: the typed record `lp-prune analyze` writes and `lp-prune compare` reads.

The top level is typed (field order is the file's key order); the per-run numbers below it stay
JSON-shaped dicts keyed by run key and evaluation language, as the reports and plots index them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lp_prune.errors import UserError
from lp_prune.storage.files import check_record_fields


@dataclass(kw_only=True)
class AnalysisResult:
    model: str
    languages: list[str]  # evaluation languages, in the windows' order
    windows: int = 0  # held-out windows per language
    seqlen: int = 0
    include_bos: bool = False
    tokens_per_language: dict[str, int] = field(default_factory=dict)
    runs: list[dict[str, Any]]  # key, label, path, setting, method, calibration_language, recipe,
    # target_language, source, calibration_seed, analysed
    snr_db: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # run key -> language -> layer
    snr_peak_token_share: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    lsar: dict[str, Any] = field(default_factory=dict)  # rank, singular_values, runs
    lape: dict[str, Any] = field(default_factory=dict)  # the neurons, and runs: bins and overlaps per run
    mask_structure: dict[str, Any] = field(default_factory=dict)  # per setting
    findings: dict[str, dict[str, Any]]  # per setting: LAPE shifts per bin and SNR outlier tokens, for the report
    timings_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, record: Any, path: Path | str) -> AnalysisResult:
        """Check an analysis.json object; a UserError naming `path` when it is not one lp_prune wrote."""
        record = check_record_fields(cls, record, path, "an analysis", "rerun `lp-prune analyze`")
        if not isinstance(record["runs"], list) or not all(isinstance(run, dict) for run in record["runs"]):
            raise UserError(f"{path}: 'runs' is not a list of analysed runs; rerun `lp-prune analyze`")
        return cls(**record)
