"""Mask structure per setting for `lp-prune analyze`: where the calibration languages' masks disagree,
per projection and layer, how unevenly rows and columns carry it, and how often the rows / columns
of the LAPE language-specific FFN neurons are disputed."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from lp_prune.analysis.analyze.lape import LanguageNeurons
from lp_prune.analysis.analyze.lape_shifts import FFN_PROJECTIONS
from lp_prune.analysis.disagreement import MaskDisagreement, setting_disagreement
from lp_prune.analysis.runs import Run
from lp_prune.config import LANGUAGES
from lp_prune.models.layers import layer_index, projection


def structure_summary(
    disagreement: dict[str, MaskDisagreement], neurons: LanguageNeurons | None, n_layers: int
) -> dict[str, Any]:
    """Per projection and layer: disputed rates; row/column unevenness; the LAPE neurons' rows/columns."""
    per_layer: dict[str, list[float]] = defaultdict(lambda: [math.nan] * n_layers)
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    neuron_rates: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"language_specific": [], "all": []})
    modules = {}
    for name, result in disagreement.items():
        proj, layer = projection(name), layer_index(name)
        summary = result.summary()
        modules[name] = summary
        per_layer[proj][layer] = summary["rate"]
        grouped[proj].append(summary)
        if neurons is not None and proj in FFN_PROJECTIONS:
            rates = result.row_rate if FFN_PROJECTIONS[proj] == 0 else result.col_rate
            neuron_rates[proj]["language_specific"] += rates[neurons.in_layer(layer)].tolist()
            neuron_rates[proj]["all"] += rates.tolist()
    keys = ("rate", "pairwise", "row_cv", "col_cv", "row_top_share", "col_top_share")
    return {
        "projection_layer": dict(per_layer),
        "projection": {
            proj: {key: statistics.fmean(s[key] for s in items) for key in keys} for proj, items in grouped.items()
        },
        "ffn_neurons": {
            proj: {group: statistics.fmean(v) if v else math.nan for group, v in rates.items()}
            for proj, rates in neuron_rates.items()
        },
        "modules": modules,
    }


def mask_structure(runs: list[Run], neurons: LanguageNeurons, n_layers: int) -> dict[str, Any]:
    """Disagreement between calibration languages, per setting with at least two of them."""
    out = {}
    by_setting: dict[str, dict[str, Run]] = defaultdict(dict)
    for run in runs:
        by_setting[run.setting].setdefault(run.calibration, run)  # one run per language (the first)
    for setting, by_language in by_setting.items():
        if len(by_language) < 2:
            continue
        order = sorted(by_language, key=lambda lang: LANGUAGES.index(lang) if lang in LANGUAGES else len(LANGUAGES))
        ordered = {lang: by_language[lang].path for lang in order}  # the seven in their order, then the others
        out[setting] = {
            "languages": list(ordered),
            **structure_summary(setting_disagreement(ordered), neurons, n_layers),
        }
    return out
