"""The data section of the run configuration: calibration and evaluation text (data.*), and how the
model writes its own calibration text (data.generation.*). See lp_prune.config.schema."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from lp_prune.config.recipe import CalibrationRecipe
from lp_prune.config.values import check_seed
from lp_prune.errors import ConfigError
from lp_prune.languages import LANGUAGES, check_source_language

DataSource = Literal["packaged", "mc4", "files", "tokens", "generated"]
DATA_SOURCES: tuple[str, ...] = get_args(DataSource)
# The field's English perplexity sets (lp_prune.data.reference), evaluated beside the languages.
ReferenceSet = Literal["wikitext2", "c4_en"]
REFERENCE_SETS: tuple[str, ...] = get_args(ReferenceSet)


@dataclass
class GenerationConfig:
    """data.source generated: the model being pruned writes its own calibration text (lp_prune.data.generated).

    It continues short seed prompts in the calibration language by sampling (temperature, then the
    top_k most likely tokens, then nucleus top_p: Gemma's own recipe), seeded by data.seed; windows
    in another language (a script / stopword check, approximate) or with an extreme perplexity
    (outside Tukey's fences on log perplexity, or above max_perplexity) are dropped, and more are
    generated, up to `tries` x the windows needed.
    """

    temperature: float = 0.8
    """Sampling temperature."""
    top_k: int = 64
    """Sample among the top_k most likely tokens (0: no cut; then top_p sorts the whole vocabulary: slow)."""
    top_p: float = 0.95
    """Nucleus sampling: the smallest set of tokens holding this probability."""
    batch_size: int = 32
    """Sequences per generate call (KV cache on; every step reads the whole LM head)."""
    tries: float = 3.0
    """Generate at most tries x nsamples windows per language before giving up."""
    check_language: bool = True
    """Drop windows in another language (script share; stopwords for de, en, es, sw: approximate)."""
    min_script_share: float = 0.8
    """Share of the letters that must be in the language's script (Latin, Arabic, Cyrillic, Han)."""
    perplexity_fence: float = 1.5
    """Tukey's k: drop log perplexities beyond Q1 - k IQR or Q3 + k IQR (0: off)."""
    max_perplexity: float = 1000.0
    """And drop any window above this perplexity."""

    def validate(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"data.generation.temperature must be positive, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"data.generation.top_k must be 0 (off) or more, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"data.generation.top_p must lie in (0, 1], got {self.top_p}")
        if self.batch_size < 1:
            raise ConfigError(f"data.generation.batch_size must be at least 1, got {self.batch_size}")
        if self.tries < 1:
            raise ConfigError(f"data.generation.tries must be at least 1 (x data.nsamples windows), got {self.tries}")
        if not 0.0 <= self.min_script_share <= 1.0:
            raise ConfigError(f"data.generation.min_script_share must lie in [0, 1], got {self.min_script_share}")
        if self.perplexity_fence < 0 or not self.max_perplexity > 1:
            raise ConfigError(
                "data.generation.perplexity_fence must be 0 or more and max_perplexity above 1, got "
                f"{self.perplexity_fence} and {self.max_perplexity}"
            )


@dataclass
class DataConfig:
    """Calibration and evaluation text."""

    source: DataSource = "packaged"
    """Text source: packaged (dataset-build text, offline), mc4 (allenai/c4 streaming, needs network), files
    (local UTF-8 text, data.files), tokens (data.token_file: calibration windows as they are), generated
    (the model writes its calibration text after it loads: data.generation; evaluation on packaged text)."""
    calibration_language: str = "en"
    """Calibration text: a language (ar, de, en, es, ru, sw, zh; with source mc4 or files any mC4 code such as
    fr, hi, ja), or a mix: en+sw (even split), all (the seven), counts en:64,sw:64, proportions en:0.4,sw:0.6
    (of data.nsamples, largest remainder)."""
    eval_languages: list[str] = field(default_factory=lambda: list(LANGUAGES))
    """Languages whose held-out text is evaluated (perplexity, bits per byte); with source mc4 or files any mC4
    code."""
    reference_sets: list[ReferenceSet] = field(default_factory=list)
    """English perplexity sets papers report, evaluated beside the languages: wikitext2 (WikiText-2 test),
    c4_en (C4 validation, first shard). They need the Hub, or a local copy in data.reference_files."""
    reference_files: dict[str, str] = field(default_factory=dict)
    """A local copy per reference set: the Hub file itself (.parquet, .json, .json.gz, .jsonl) or a folder
    holding the dataset repository, e.g. {wikitext2: wikitext-2-raw-v1/test-00000-of-00001.parquet}."""
    reference_seqlen: int = 2048
    """Tokens per reference-set window (the field's 2048; at most the model's context)."""
    reference_windows: int = 0
    """At most this many windows per reference set (0: the field's count: all of WikiText-2, 256 of C4)."""
    nsamples: int = 32
    """Calibration windows (a mix's explicit counts take precedence)."""
    seqlen: int = 256
    """Tokens per calibration window, BOS included."""
    eval_windows: int = 8
    """Held-out windows per evaluation language (0: no perplexity evaluation)."""
    eval_seqlen: int = 256
    """Tokens per evaluation window."""
    eval_fraction: float = 0.2
    """Share of packaged or local text held out for evaluation (never used for calibration)."""
    batch_size: int = 8
    """Calibration windows per forward pass."""
    eval_batch_size: int = 8
    """Evaluation windows per forward pass (the LM head then runs on 256 positions at a time)."""
    files: dict[str, str] = field(default_factory=dict)
    """data.source files: a UTF-8 text file per language, e.g. {en: my.txt}."""
    token_file: str | None = None
    """data.source tokens: a [n, seqlen] .pt or .npy file of token ids."""
    seed: int = 0
    """Seed of the calibration window draw; for mc4 it also shuffles the stream (other seed, other documents)."""
    shuffle_buffer: int = 10_000
    """mc4: rows the seeded streaming shuffle draws from (datasets' buffer_size)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """data.source generated: how the model writes its calibration text."""

    def __post_init__(self) -> None:
        if isinstance(self.generation, dict):  # built from a plain dict (W&B configs, tests)
            self.generation = GenerationConfig(**self.generation)

    def validate(self) -> None:
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"data.source '{self.source}' is not one of: {', '.join(DATA_SOURCES)}")
        # sources other than mc4 and files evaluate on the packaged text
        for lang in self.eval_languages:
            check_source_language(lang, "data.eval_languages", self.source)
        self._validate_reference_sets()
        for key in ("nsamples", "seqlen", "eval_seqlen", "batch_size", "eval_batch_size", "shuffle_buffer"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be at least 1, got {getattr(self, key)}")
        if self.eval_windows < 0:
            raise ConfigError(f"data.eval_windows must be 0 or more, got {self.eval_windows}")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ConfigError(f"data.eval_fraction must lie in (0, 1), got {self.eval_fraction}")
        check_seed(self.seed, "data.seed")
        if self.source == "tokens" and not self.token_file:
            raise ConfigError("data.source 'tokens' needs data.token_file (a [n, seqlen] .pt or .npy file)")
        if self.source == "generated":
            self.generation.validate()
        recipe = self.recipe()
        if self.source == "tokens" and recipe.is_mix:
            raise ConfigError("data.source 'tokens' takes its windows from the file: a calibration mix needs text")
        for lang in recipe.languages:
            if self.source not in ("tokens", "generated"):  # tokens: ids as they are; generated: checked below
                check_source_language(lang, "data.calibration_language", self.source)
            if self.source == "generated" and lang not in LANGUAGES:
                raise ConfigError(
                    f"data.calibration_language: data.source generated has seed prompts in {', '.join(LANGUAGES)} "
                    f"only, not '{lang}'"
                )
            if self.source == "files" and lang not in self.files:
                raise ConfigError(f"data.source 'files' needs data.files.{lang}: a text file per language")

    def _validate_reference_sets(self) -> None:
        for name in self.reference_sets:
            if name not in REFERENCE_SETS:
                raise ConfigError(f"data.reference_sets: unknown set '{name}'; valid: {', '.join(REFERENCE_SETS)}")
        for name, path in self.reference_files.items():
            if name not in REFERENCE_SETS:
                raise ConfigError(f"data.reference_files: unknown set '{name}'; valid: {', '.join(REFERENCE_SETS)}")
            if name in self.reference_sets and not Path(path).expanduser().exists():
                raise ConfigError(f"data.reference_files.{name}: {path} does not exist")
        if self.reference_seqlen < 2:
            raise ConfigError(f"data.reference_seqlen must be at least 2, got {self.reference_seqlen}")
        if self.reference_windows < 0:
            raise ConfigError(
                f"data.reference_windows must be 0 (the field's count) or more, got {self.reference_windows}"
            )

    def recipe(self, statistics: str = "pooled", weights: Mapping[str, float] | None = None) -> CalibrationRecipe:
        """The calibration recipe `calibration_language` names (see lp_prune.config.recipe), with a
        statistics rule (RunConfig.recipe() passes prune.statistics and prune.language_weights)."""
        return CalibrationRecipe.parse(self.calibration_language, self.nsamples, self.source, statistics, weights)

    def calibration_counts(self) -> dict[str, int]:
        """Calibration windows per language, in the mix's order (recipe().counts)."""
        return self.recipe().counts

    @property
    def calibration_samples(self) -> int:
        """Calibration windows in all: data.nsamples, or the sum of a mix's explicit counts."""
        return self.recipe().total
