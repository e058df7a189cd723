"""The study's claims, checked on the numbers of saved runs: one verdict per claim and setting.

Pure functions over what `compare` (tables.Comparison and the runs behind it) and `analyze`
(analysis.json) already produce; nothing is recomputed. Every verdict is a measurement: the effect,
the noise it is judged against (the spread over repeats of one recipe, i.e. calibration draws with
different seeds), and the decision: supported, not supported, inconclusive (within noise, too little
power, or no repeats to judge against), no data, or does not apply (C4 for methods that prune nothing,
C8 for methods that remove no channel whole; verdicts.py).

    C1  target-language calibration gives the lowest perplexity on that language    claims_perplexity
    C2  ... and the highest SNR on that language                                     claims_analysis
    C3  ... but does not consistently improve downstream accuracy on it              claims_downstream
    C4  o_proj and down_proj have the least consistent masks, especially early;
        the first layer's q/k/v stay consistent                                      claims_masks
    C5  target-language calibration lowers the language-specific error only          claims_analysis
    C6  pruning shifts the activation probabilities of low-probability
        language-specific neurons                                                    claims_analysis
    C7  a similar or an outlier calibration language gives no consistent advantage   claims_perplexity
    C8  (structured pruning, beyond the study) own-language calibration removes fewer
        of that language's LAPE neurons than other calibrations do                    claims_lape
    Q1  (the study's open question) does the calibration effect depend on the task type  claims_task_type

Rows: a run's target language is its calibration language whatever the text source; mixes, 'all',
generated text and other statistics rules are recipes, never the target language (targets.py).
Repeats of a recipe are averaged, never overwritten.
"""

from __future__ import annotations

from typing import Any

from lp_prune.analysis.compare.claims_analysis import (
    NO_ANALYSIS,
    analysed_runs,
    c2_highest_snr,
    c5_specific_only,
    c6_low_probability_shifts,
)
from lp_prune.analysis.compare.claims_downstream import c3_downstream_gains
from lp_prune.analysis.compare.claims_lape import NOT_STRUCTURED, c8_lape_survival
from lp_prune.analysis.compare.claims_masks import c4_least_consistent_masks
from lp_prune.analysis.compare.claims_perplexity import c1_lowest_perplexity, c7_related_languages
from lp_prune.analysis.compare.claims_task_type import q1_task_type
from lp_prune.analysis.compare.groups import by_setting
from lp_prune.analysis.compare.targets import target_rows
from lp_prune.analysis.compare.verdicts import (
    DEFAULT_MARGINS,
    DOES_NOT_APPLY,
    INCONCLUSIVE,
    NO_DATA,
    NOT_SUPPORTED,
    STATEMENTS,
    SUPPORTED,
    Finding,
    Margins,
)
from lp_prune.analysis.result import AnalysisResult
from lp_prune.pruning.method import structured

__all__ = [
    "DOES_NOT_APPLY",
    "INCONCLUSIVE",
    "NOT_SUPPORTED",
    "NO_DATA",
    "STATEMENTS",
    "SUPPORTED",
    "Finding",
    "analysis_findings",
    "comparison_findings",
]

ANALYSIS_CLAIMS = ("C2", "C5", "C6", "C8")
NO_MASKS = "The method prunes nothing (it quantizes): every mask keeps every weight, so mask IoU does not apply."
STRUCTURED_MASKS = (
    "The method removes whole channels and heads: only down_proj's and o_proj's masks hold them (the rows that "
    "write them go when the model is cut), so the ranking of projections does not apply; their IoU is in the tables."
)


def _c4(iou: dict[str, Any], runs: list[Any]) -> Finding:
    """C4 where the setting's runs prune Linears weight by weight; not for quantization (target sparsity 0)
    or structured runs (masks on down_proj and o_proj only)."""
    if runs and all(structured(run.summary.method) for run in runs):
        return Finding("C4", DOES_NOT_APPLY, STRUCTURED_MASKS)
    if any(run.summary.target_sparsity > 0 for run in runs):
        return c4_least_consistent_masks(iou)
    return Finding("C4", DOES_NOT_APPLY, NO_MASKS)


def _c8(runs: list[Any], analysed: dict[str, Finding]) -> Finding:
    """C8 for structured runs (from the analysis, else 'no data'); the other methods remove no channel."""
    if runs and not all(structured(run.summary.method) for run in runs):
        return Finding("C8", DOES_NOT_APPLY, NOT_STRUCTURED)
    return analysed.get("C8") or Finding("C8", NO_DATA, NO_ANALYSIS)


def analysis_findings(
    analysis: AnalysisResult, compared: list[Any] | None = None, margins: Margins = DEFAULT_MARGINS
) -> dict[str, list[Finding]]:
    """C2, C5, C6 and C8 per setting of an analysis (`lp-prune analyze`'s analysis.json); with `compared`
    (compare's runs), the runs it holds are grouped and labelled as compare does."""
    return {
        setting: [
            c2_highest_snr(analysis, runs),
            c5_specific_only(analysis, runs, margins.c5),
            c6_low_probability_shifts(analysis, runs),
            c8_lape_survival(analysis, runs),
        ]
        for setting, runs in analysed_runs(analysis, compared or ()).items()
    }


def comparison_findings(
    comparison: Any, analysis: AnalysisResult | None = None, margins: Margins = DEFAULT_MARGINS
) -> dict[str, list[Finding]]:
    """C1-C8 and Q1 per setting of a compare result (C2, C5, C6, C8 from `analysis` when given, else
    'no data'); `margins`: the margins of the "no difference" tests (C3 and Q1 read margins.c3)."""
    from lp_prune.config.tasks import task_language

    from_analysis = analysis_findings(analysis, comparison.runs, margins) if analysis else {}
    groups = by_setting(comparison.runs)
    out = {}
    for setting in comparison.perplexity:
        runs = groups.get(setting, [])
        analysed = {f.claim: f for f in from_analysis.get(setting, [])}
        missing = {claim: Finding(claim, NO_DATA, NO_ANALYSIS) for claim in ANALYSIS_CLAIMS}
        out[setting] = [
            c1_lowest_perplexity(runs),
            analysed.get("C2") or missing["C2"],
            c3_downstream_gains(target_rows(runs), task_language, margins.c3),
            _c4(comparison.iou.get(setting, {}), runs),
            analysed.get("C5") or missing["C5"],
            analysed.get("C6") or missing["C6"],
            c7_related_languages(runs, margins.c7),
            _c8(runs, analysed),
            q1_task_type(target_rows(runs), task_language, margins.c3),
        ]
    return out
