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

Every claim is declared once, in CLAIMS: its id, what the tool tests, the study's own wording, where
it stands (the study's claim, beyond the study, or the study's open question), what it reads (the
runs, or `lp-prune analyze`'s analysis.json) and the function that judges it. The report, compare,
analyze and the study report all read that table; adding a claim is one entry here plus its function.

Rows: a run's target language is its calibration language whatever the text source; mixes, 'all',
generated text and other statistics rules are recipes, never the target language (targets.py).
Repeats of a recipe are averaged, never overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
from lp_prune.analysis.compare.targets import AnalysedRun, target_rows
from lp_prune.analysis.compare.verdicts import (
    DEFAULT_MARGINS,
    DOES_NOT_APPLY,
    INCONCLUSIVE,
    NO_DATA,
    NOT_SUPPORTED,
    SUPPORTED,
    Finding,
    Margins,
)
from lp_prune.analysis.result import AnalysisResult
from lp_prune.config.tasks import task_language

__all__ = [
    "CLAIMS",
    "DOES_NOT_APPLY",
    "INCONCLUSIVE",
    "NOT_SUPPORTED",
    "NO_DATA",
    "SUPPORTED",
    "Claim",
    "Finding",
    "analysis_findings",
    "comparison_findings",
]

NO_MASKS = "The method prunes nothing (it quantizes): every mask keeps every weight, so mask IoU does not apply."
STRUCTURED_MASKS = (
    "The method removes whole channels and heads: only down_proj's and o_proj's masks hold them (the rows that "
    "write them go when the model is cut), so the ranking of projections does not apply; their IoU is in the tables."
)
STUDY, BEYOND, OPEN = "the study's claim", "beyond the study", "open question in the study"


@dataclass(frozen=True)
class SettingData:
    """What one setting's claims read: compare's runs and IoU tables, and (for the analysis claims)
    analysis.json with its analysed runs of the setting."""

    runs: list[Any]
    iou: dict[str, Any]
    margins: Margins
    analysis: AnalysisResult | None = None
    analysed: list[AnalysedRun] | None = None


@dataclass(frozen=True)
class Claim:
    id: str  # "C1", ..., "Q1"
    statement: str  # what the tool tests
    study: str  # what the study reports, in its words
    judge: Callable[[SettingData], Finding]
    standing: str = STUDY  # STUDY, BEYOND (the study does not make it) or OPEN (the study leaves it open)
    reads_analysis: bool = False  # judged from analysis.json (`lp-prune analyze`)
    limits: str | None = None  # what differs from the study here

    def finding(self, data: SettingData) -> Finding:
        if self.reads_analysis and data.analysis is None:
            found = Finding(self.id, NO_DATA, NO_ANALYSIS)
            if self.id == "C8" and data.runs and not all(run.capabilities.structured for run in data.runs):
                found = Finding(self.id, DOES_NOT_APPLY, NOT_STRUCTURED)
        else:
            found = self.judge(data)
        found.statement = self.statement
        return found


def _c4(data: SettingData) -> Finding:
    """C4 where the setting's runs prune Linears weight by weight; not for quantization (target sparsity 0)
    or structured runs (masks on down_proj and o_proj only)."""
    runs = data.runs
    if runs and all(run.capabilities.structured for run in runs):
        return Finding("C4", DOES_NOT_APPLY, STRUCTURED_MASKS)
    if any(run.summary.target_sparsity > 0 for run in runs):
        return c4_least_consistent_masks(data.iou)
    return Finding("C4", DOES_NOT_APPLY, NO_MASKS)


def _c8(data: SettingData) -> Finding:
    """C8 for structured runs; the other methods remove no channel."""
    if data.runs and not all(run.capabilities.structured for run in data.runs):
        return Finding("C8", DOES_NOT_APPLY, NOT_STRUCTURED)
    return c8_lape_survival(data.analysis, data.analysed or [])


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "C1",
        "Calibrating on the target language generally gives the lowest perplexity on that language.",
        "Own-language calibration generally gives the lowest perplexity on that language, with exceptions "
        "(languages where another calibration language is as good or better).",
        lambda d: c1_lowest_perplexity(d.runs),
    ),
    Claim(
        "C2",
        "Calibrating on the target language generally gives the highest SNR of the hidden states on that language.",
        "Own-language calibration generally gives the highest SNR of the pruned model's hidden states on that "
        "language, across the layers.",
        lambda d: c2_highest_snr(d.analysis, d.analysed or []),
        reads_analysis=True,
    ),
    Claim(
        "C3",
        "Target-language calibration does not consistently improve downstream accuracy on that language.",
        "Downstream accuracy (Belebele, ARC, HellaSwag, MMLU, MKQA) does not consistently improve with "
        "target-language calibration; the best calibration language varies by task and language.",
        lambda d: c3_downstream_gains(target_rows(d.runs), task_language, d.margins.c3),
        limits="Offline: the packaged probe and proxy tasks of the seven languages, not the study's benchmarks "
        "(those need the Hugging Face Hub).",
    ),
    Claim(
        "C4",
        "o_proj and down_proj have the least consistent masks across calibration languages, especially in "
        "early layers, while q/k/v of the first layer stay consistent.",
        "Attention output (o_proj) and FFN down projections have the lowest mask IoU across calibration "
        "languages, most of all in early layers; the first layer's q/k/v masks stay consistent.",
        _c4,
    ),
    Claim(
        "C5",
        "Target-language calibration lowers the error on the language-specific part only: the error on "
        "language-agnostic features is similar whatever the calibration language.",
        "Target-language calibration lowers the error on the language-specific part of the hidden states; "
        "the error on the language-agnostic part is similar whatever the calibration language.",
        lambda d: c5_specific_only(d.analysis, d.analysed or [], d.margins.c5),
        reads_analysis=True,
    ),
    Claim(
        "C6",
        "Pruning shifts the activation probabilities of low-probability language-specific neurons.",
        "Pruning shifts the activation probabilities of language-specific neurons with low activation probability.",
        lambda d: c6_low_probability_shifts(d.analysis, d.analysed or []),
        reads_analysis=True,
    ),
    Claim(
        "C7",
        "Calibrating on a linguistically similar or an outlier language gives no consistent advantage.",
        "A linguistically similar language, or an outlier one, as calibration gives no consistent advantage.",
        lambda d: c7_related_languages(d.runs, d.margins.c7),
    ),
    Claim(
        "C8",
        "Under structured pruning, calibrating on a language removes fewer of its language-specific (LAPE) "
        "neurons than calibrating on the other languages does.",
        "Not reported: the study prunes weight by weight, so no LAPE neuron is removed whole.",
        _c8,
        standing=BEYOND,
        reads_analysis=True,
    ),
    Claim(
        "Q1",
        "Does the calibration-language effect on downstream accuracy depend on the task type?",
        "Posed as an open question: whether the effect of the calibration language depends on the task type.",
        lambda d: q1_task_type(target_rows(d.runs), task_language, d.margins.c3),
        standing=OPEN,
    ),
)
CLAIMS_BY_ID = {claim.id: claim for claim in CLAIMS}


def analysis_findings(
    analysis: AnalysisResult, compared: list[Any] | None = None, margins: Margins = DEFAULT_MARGINS
) -> dict[str, list[Finding]]:
    """The claims read from an analysis (`lp-prune analyze`'s analysis.json), per setting; with `compared`
    (compare's runs), the runs it holds are grouped and labelled as compare does."""
    groups = by_setting(list(compared or ()))
    out = {}
    for setting, analysed in analysed_runs(analysis, compared or ()).items():
        data = SettingData(groups.get(setting, []), {}, margins, analysis, analysed)
        out[setting] = [claim.finding(data) for claim in CLAIMS if claim.reads_analysis]
    return out


def comparison_findings(
    comparison: Any, analysis: AnalysisResult | None = None, margins: Margins = DEFAULT_MARGINS
) -> dict[str, list[Finding]]:
    """Every claim per setting of a compare result (the analysis claims from `analysis` when given, else
    'no data'); `margins`: the margins of the "no difference" tests."""
    analysed = analysed_runs(analysis, comparison.runs) if analysis else {}
    groups = by_setting(comparison.runs)
    out = {}
    for setting in comparison.perplexity:
        runs = groups.get(setting, [])
        has_analysis = analysis is not None and setting in analysed
        data = SettingData(
            runs,
            comparison.iou.get(setting, {}),
            margins,
            analysis if has_analysis else None,
            analysed.get(setting),
        )
        out[setting] = [claim.finding(data) for claim in CLAIMS]
    return out
