"""The pruning part of the run configuration (`prune.*`): the method object with its own settings,
and the keys every method shares (sparsity, pattern, OWL, statistics rule, which Linears).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from lp_prune.config.method_keys import with_settings
from lp_prune.config.targets import LinearTargets, check_patterns
from lp_prune.config.values import parse_pattern
from lp_prune.errors import ConfigError
from lp_prune.languages import check_known_language
from lp_prune.pruning.method import PruneContext, PruningMethod
from lp_prune.pruning.registry import DEFAULT_METHOD, build_method, check_known, choice_of

LocalErrorMode = Literal["auto", "exact", "sample", "off"]
StatisticsRule = Literal["pooled", "balanced", "weighted"]


@dataclass
class PruneConfig:
    """How to prune: the method with its own settings, and what every method shares (target sparsity or
    N:M pattern, order, statistics, error metrics, OWL)."""

    method: PruningMethod = field(default_factory=lambda: build_method(DEFAULT_METHOD))
    """Pruning method: sparsegpt (second-order, updates kept weights), wanda (|W| x input norm), magnitude, the
    quantization methods gptq (second-order) and rtn (round-to-nearest), sparsegpt_gptq (pruning and GPTQ in one
    column loop), wanda_sp (structured), one registered through lp_prune.pruning.register, or the class path of
    an imported PruningMethod. Its own settings are the flat keys below (prune.blocksize, prune.bits, ...);
    those of other methods are ignored."""
    sparsity: float = 0.5
    """Fraction of each Linear's weights to prune (unstructured). Ignored by gptq and rtn, which prune nothing:
    their summary's sparsity counts the weights that rounded to exactly 0."""
    pattern: str = "unstructured"
    """'unstructured', or N:M such as 2:4 (N of every M consecutive inputs pruned; sparsity is then N/M)."""
    true_sequential: bool = False
    """Prune [q,k,v] -> [o] -> [gate,up] -> [down], each group calibrated on the pruned groups' outputs."""
    # One forward per decoder layer instead of two: all calibration windows go through the layer as
    # one batch, and each true-sequential group is pruned in a hook just before its first Linear
    # runs, on inputs from the already-pruned groups before it. Needs memory for one layer's
    # activations of all windows at once.
    single_pass: bool = False
    """The true-sequential result with one forward per layer (all windows in one batch: more memory)."""
    # Per-Linear pruning error and SNR on the calibration inputs. Exact needs each input's X^T X, which
    # SparseGPT builds anyway; for Wanda it costs more than Wanda itself (o_proj, down_proj), so by
    # default Wanda and magnitude measure on a seeded sample of `metric_tokens` calibration tokens
    # (`sample`). `off` records NaN and keeps Wanda to the squared input norms.
    local_error: LocalErrorMode | bool = "auto"
    """Per-Linear error and SNR: auto (exact for SparseGPT, sample for Wanda and magnitude), exact, sample,
    off (true/false from older configs mean exact/off)."""
    metric_tokens: int = 2048
    """local_error sample: about this many calibration tokens, seeded, measure the error metrics."""
    statistics: StatisticsRule = "pooled"
    """How calibration languages combine in the input statistics: pooled (every token equal), balanced
    (every language equal, whatever its share of the windows), weighted (prune.language_weights)."""
    language_weights: dict[str, float] = field(default_factory=dict)
    """statistics weighted: each calibration language's share of the statistics, e.g. {en: 0.5, sw: 0.5}."""
    # OWL (Yin et al. 2024): per-layer sparsity from the layer's share of outlier Wanda scores
    # (scores above owl_threshold x the layer mean), spread over a range 2 x owl_lambda wide.
    owl: bool = False
    """OWL: a sparsity per layer from its share of outlier Wanda scores (mean stays prune.sparsity)."""
    owl_threshold: float = 5.0
    """OWL: a score above this many times its layer's mean is an outlier."""
    owl_lambda: float = 0.08
    """OWL: layer sparsities span 2 x owl_lambda around prune.sparsity."""
    targets: list[str] | str = field(default_factory=lambda: ["Linear"])
    """Which Linears of the decoder layers are pruned, as llm-compressor names modules: a class (Linear), a module
    name or its last parts (down_proj, mlp.down_proj), or re:<regex> matched from the start of the full module
    name (re:.*self_attn.*)."""
    ignore: list[str] | str = field(default_factory=list)
    """Linears left as they are although a target names them, in the same patterns (e.g. [re:.*down_proj])."""

    def __post_init__(self) -> None:
        if isinstance(self.method, str):  # a name or class path, with the method's default settings
            self.method = build_method(self.method)

    @classmethod
    def of(cls, method: str | PruningMethod = DEFAULT_METHOD, **values: Any) -> PruneConfig:
        """From flat keys, as YAML and the command line spell them: the shared keys, and beside them the
        chosen method's settings (those of other methods are ignored; config.method_keys)."""
        shared = {item.name for item in fields(cls)}
        settings = {key: value for key, value in values.items() if key not in shared}
        return cls(with_settings(method, settings), **{key: values[key] for key in values if key in shared})

    def to_dict(self) -> dict[str, Any]:
        """As YAML spells it: the method's name (or class path), its settings as flat keys, the shared keys."""
        shared = {item.name: copy.deepcopy(getattr(self, item.name)) for item in fields(self) if item.name != "method"}
        return {"method": choice_of(self.method), **self.method.settings(), **shared}

    def validate(self) -> None:
        check_known(self.method)  # one line naming the known methods
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError(f"prune.sparsity must lie in [0, 1), got {self.sparsity}")
        parse_pattern(self.pattern)
        self.method.validate()
        if self.metric_tokens < 1:
            raise ConfigError(f"prune.metric_tokens must be at least 1, got {self.metric_tokens}")
        if self.owl and not self.method.zeroes:
            raise ConfigError(
                f"prune.owl sets a sparsity per layer, but {self.method.name} quantizes and prunes nothing"
            )
        if self.owl:
            self._validate_owl()
        for lang, weight in self.language_weights.items():
            check_known_language(lang, "prune.language_weights")
            if not weight > 0:
                raise ConfigError(f"prune.language_weights.{lang} must be positive, got {weight}")
        if self.statistics == "weighted" and not self.language_weights:
            raise ConfigError("prune.statistics weighted needs prune.language_weights, e.g. {en: 0.5, sw: 0.5}")
        self.targets, self.ignore = _pattern_list(self.targets), _pattern_list(self.ignore)
        if not self.targets:
            raise ConfigError("prune.targets is empty, so nothing would be pruned; the default is [Linear]")
        check_patterns(self.targets, "prune.targets")
        check_patterns(self.ignore, "prune.ignore")

    def _validate_owl(self) -> None:
        if self.n_m is not None:
            raise ConfigError("prune.owl sets a sparsity per layer: it needs prune.pattern unstructured, not N:M")
        if self.owl_threshold <= 0:
            raise ConfigError(f"prune.owl_threshold must be positive, got {self.owl_threshold}")
        # Layer sparsities lie within sparsity +- 2 * lambda, which must stay inside [0, 1).
        if not (0.0 <= 2 * self.owl_lambda <= self.sparsity and self.sparsity + 2 * self.owl_lambda < 1.0):
            bound = min(self.sparsity, 1.0 - self.sparsity) / 2
            raise ConfigError(
                f"prune.owl_lambda {self.owl_lambda} must lie in [0, {bound:g}) at sparsity {self.sparsity:g}: "
                "layer sparsities lie within sparsity +- 2 x owl_lambda"
            )

    @property
    def n_m(self) -> tuple[int, int] | None:
        return parse_pattern(self.pattern)

    @property
    def linear_targets(self) -> LinearTargets:
        """The Linears this config prunes (prune.targets less prune.ignore)."""
        return LinearTargets(tuple(_pattern_list(self.targets)), tuple(_pattern_list(self.ignore)))

    @property
    def local_error_mode(self) -> str:
        """exact, sample or off: what `local_error` means for this method."""
        if isinstance(self.local_error, bool):
            return "exact" if self.local_error else "off"
        if self.local_error == "auto":
            return self.method.default_local_error
        return self.local_error

    @property
    def context(self) -> PruneContext:
        """What every method reads besides its own settings: the pattern and the target sparsity."""
        return PruneContext(self.n_m, self.sparsity)

    @property
    def target_sparsity(self) -> float:
        """What the method aims for: N/M for a pattern, else `sparsity`; 0 for a method that prunes nothing."""
        if not self.method.zeroes:
            return 0.0
        nm = self.n_m
        return nm[0] / nm[1] if nm else self.sparsity


def _pattern_list(patterns: list[str] | str | None) -> list[str]:
    """A list of module patterns; one pattern may be given alone (`--prune.ignore re:.*down_proj`)."""
    return [patterns] if isinstance(patterns, str) else list(patterns or [])
