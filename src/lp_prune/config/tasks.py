"""The downstream task rules: eval.tasks shorthands, the study's lm-eval task per language, and the
names of lp_prune's own per-language tasks. The config checks names against them and
lp_prune.evaluation.downstream expands and runs them.

- Belebele `belebele_<flores code>`: all seven languages, and any of Belebele's 122 configs named by
  its FLORES-200 code (`belebele_fra_Latn`; in eval.languages: `fra_Latn`).
- Okapi ARC (`arc_<lang>`; English: the original `arc_challenge`): no Swahili.
- Okapi HellaSwag (`hellaswag_<lang>`; English: `hellaswag`): no Swahili, no Chinese.
- Okapi MMLU (`m_mmlu_<lang>`): no Swahili.
- MKQA (`mkqa_<lang>`, shipped by lp_prune in evaluation/tasks/mkqa): MKQA has no Swahili.
- The offline proxies `lp_prune_proxy_<lang>` (lp_prune.evaluation.proxy_tasks): every language.
- The offline knowledge-and-reasoning probe `lp_prune_probe_<family>_<lang>` (lp_prune.evaluation.probe):
  every family in every language, the same items in all seven.
- The offline CLDR probe `lp_prune_cldr_<family>_<lang>` (lp_prune.evaluation.probe_cldr): parallel
  items from the Unicode CLDR's human-translated names, every family in every language.

Missing tasks are None in STUDY_TASKS, never replaced by something else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lp_prune.errors import ConfigError
from lp_prune.languages import BELEBELE_CONFIGS, LANGUAGE_TABLE, LANGUAGES, MC4_LANGUAGES, check_belebele_config

PROXY_PREFIX = "lp_prune_proxy_"
PROBE_PREFIX = "lp_prune_probe_"
CLDR_PREFIX = "lp_prune_cldr_"
MKQA_PREFIX = "mkqa_"
BELEBELE_PREFIX = "belebele_"
_FLORES_CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")  # language_Script, Belebele's config names
# The probe's item families (lp_prune.evaluation.probe builds one task per family and language).
PROBE_FAMILIES: tuple[str, ...] = ("capitals", "continents", "arithmetic", "ordering", "comparison")
# The CLDR probe's item families (lp_prune.evaluation.probe_cldr: one task per family and language).
CLDR_FAMILIES: tuple[str, ...] = ("continent", "currency", "language", "month", "weekday")
_NAMED_PER_LANGUAGE = (PROXY_PREFIX, MKQA_PREFIX)  # lp_prune's own tasks: <prefix><language>

# lm-eval task names of the study's benchmarks per language; None: lm-eval has no such task.
STUDY_TASKS: dict[str, dict[str, str | None]] = {
    "belebele": {code: f"belebele_{lang.belebele}" for code, lang in LANGUAGE_TABLE.items()},
    "arc": {code: lang.arc for code, lang in LANGUAGE_TABLE.items()},
    "hellaswag": {code: lang.hellaswag for code, lang in LANGUAGE_TABLE.items()},
    "mmlu": {code: lang.mmlu for code, lang in LANGUAGE_TABLE.items()},
    "mkqa": {code: (f"{MKQA_PREFIX}{code}" if lang.mkqa else None) for code, lang in LANGUAGE_TABLE.items()},
}

# eval.tasks shorthands, expanded per language by expand_tasks.
# proxy_calibration: the proxy tasks of the run's calibration languages only (sweeps over targets).
# probe: every probe family in every evaluation language; probe_<family>: one family;
# probe_calibration: every family in the calibration languages only. cldr, cldr_<family> and
# cldr_calibration alike for the CLDR probe.
_PROBE_SHORTHANDS = {f"probe_{family}": family for family in PROBE_FAMILIES}
_CLDR_SHORTHANDS = {f"cldr_{family}": family for family in CLDR_FAMILIES}
TASK_SHORTHANDS: tuple[str, ...] = (
    "proxy",
    "proxy_calibration",
    "probe",
    "probe_calibration",
    *_PROBE_SHORTHANDS,
    "cldr",
    "cldr_calibration",
    *_CLDR_SHORTHANDS,
    *STUDY_TASKS,
    "study",
)

_TASK_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*$")
_LANGUAGE_OF_TASK = {name: lang for table in STUDY_TASKS.values() for lang, name in table.items() if name}


def proxy_task_name(lang: str) -> str:
    return f"{PROXY_PREFIX}{lang}"


def proxy_language(task: str) -> str | None:
    """'lp_prune_proxy_sw' -> 'sw'; None for any other name."""
    lang = task.removeprefix(PROXY_PREFIX)
    return lang if task.startswith(PROXY_PREFIX) and lang in LANGUAGES else None


def probe_task_name(family: str, lang: str) -> str:
    return f"{PROBE_PREFIX}{family}_{lang}"


def cldr_task_name(family: str, lang: str) -> str:
    return f"{CLDR_PREFIX}{family}_{lang}"


def _family_parts(task: str, prefix: str, families: Sequence[str]) -> tuple[str, str] | None:
    family, underscore, lang = task.removeprefix(prefix).rpartition("_")
    if task.startswith(prefix) and underscore and family in families and lang in LANGUAGES:
        return family, lang
    return None


def _probe_parts(task: str) -> tuple[str, str] | None:
    return _family_parts(task, PROBE_PREFIX, PROBE_FAMILIES)


def _cldr_parts(task: str) -> tuple[str, str] | None:
    return _family_parts(task, CLDR_PREFIX, CLDR_FAMILIES)


def probe_language(task: str) -> str | None:
    """'lp_prune_probe_arithmetic_sw' -> 'sw'; None for any other name."""
    parts = _probe_parts(task)
    return parts[1] if parts else None


def probe_family(task: str) -> str | None:
    """'lp_prune_probe_arithmetic_sw' -> 'arithmetic'; None for any other name."""
    parts = _probe_parts(task)
    return parts[0] if parts else None


def cldr_language(task: str) -> str | None:
    """'lp_prune_cldr_currency_sw' -> 'sw'; None for any other name."""
    parts = _cldr_parts(task)
    return parts[1] if parts else None


def cldr_family(task: str) -> str | None:
    """'lp_prune_cldr_currency_sw' -> 'currency'; None for any other name."""
    parts = _cldr_parts(task)
    return parts[0] if parts else None


def choice_probe_family(task: str) -> str | None:
    """The family of a task of either offline probe, both four-choice (chance 0.25): the hand-written
    probe's by name ('capitals'), the CLDR probe's prefixed ('cldr_currency'); None for other tasks."""
    if family := cldr_family(task):
        return f"cldr_{family}"
    return probe_family(task)


def task_language(task: str) -> str | None:
    """The language a task tests, for lp_prune's tasks and the study's table (the seven's codes), and
    for Belebele's other configs their FLORES-200 code; None otherwise."""
    return (
        proxy_language(task)
        or probe_language(task)
        or cldr_language(task)
        or _LANGUAGE_OF_TASK.get(task)
        or _belebele_config(task)
    )


def belebele_task_name(lang: str) -> str | None:
    """The Belebele task of one of the seven or of a Belebele config ('sw' and 'swh_Latn' ->
    'belebele_swh_Latn'); None for any other code."""
    if lang in LANGUAGE_TABLE:
        return STUDY_TASKS["belebele"][lang]
    return f"{BELEBELE_PREFIX}{lang}" if lang in BELEBELE_CONFIGS else None


def _belebele_config(task: str) -> str | None:
    config = task.removeprefix(BELEBELE_PREFIX)
    return config if task.startswith(BELEBELE_PREFIX) and config in BELEBELE_CONFIGS else None


def check_task_language(lang: str, key: str) -> None:
    """A language the shorthands may expand over: one of the seven, an mC4 code (only tasks that have
    it: none of the study's yet), or a Belebele config (Belebele only)."""
    if lang in LANGUAGES or lang in MC4_LANGUAGES or lang in BELEBELE_CONFIGS:
        return
    raise ConfigError(
        f"{key}: unknown language '{lang}'; valid: the study's {', '.join(LANGUAGES)}, an mC4 language code, "
        f"or one of Belebele's {len(BELEBELE_CONFIGS)} configs such as fra_Latn"
    )


def is_local(task: str) -> bool:
    """A task lp_prune writes at run time from its own data (proxy, probe, CLDR probe): no Hub, no lm-eval index."""
    return any(reader(task) is not None for reader in (proxy_language, probe_language, cldr_language))


def is_packaged(task: str) -> bool:
    """A task whose YAML lp_prune ships (MKQA)."""
    return task.startswith(MKQA_PREFIX) and task_language(task) is not None


def expand_tasks(
    names: Sequence[str], languages: Sequence[str], calibration_languages: Sequence[str] = ()
) -> list[str]:
    """Shorthands -> task names for `languages` (languages a task lacks are skipped); order kept, no repeats.

    proxy_calibration: the proxies of `calibration_languages` (the run's calibration mix) only.
    probe / probe_calibration: the probe families, family by family, over the same languages; cldr /
    cldr_calibration alike for the CLDR probe.
    The proxies and the probe exist for the seven only; a Belebele config (fra_Latn) expands belebele
    alone.
    """
    expanded: list[str] = []
    seven = [lang for lang in languages if lang in LANGUAGES]
    calibration_languages = [lang for lang in calibration_languages if lang in LANGUAGES]
    for name in names:
        if name == "proxy":
            expanded += [proxy_task_name(lang) for lang in seven]
        elif name == "proxy_calibration":
            expanded += [proxy_task_name(lang) for lang in calibration_languages]
        elif name == "probe":
            expanded += [probe_task_name(family, lang) for family in PROBE_FAMILIES for lang in seven]
        elif name == "probe_calibration":
            expanded += [probe_task_name(family, lang) for family in PROBE_FAMILIES for lang in calibration_languages]
        elif name in _PROBE_SHORTHANDS:
            expanded += [probe_task_name(_PROBE_SHORTHANDS[name], lang) for lang in seven]
        elif name == "cldr":
            expanded += [cldr_task_name(family, lang) for family in CLDR_FAMILIES for lang in seven]
        elif name == "cldr_calibration":
            expanded += [cldr_task_name(family, lang) for family in CLDR_FAMILIES for lang in calibration_languages]
        elif name in _CLDR_SHORTHANDS:
            expanded += [cldr_task_name(_CLDR_SHORTHANDS[name], lang) for lang in seven]
        elif name == "study":
            expanded += expand_tasks(list(STUDY_TASKS), languages)
        elif name == "belebele":
            expanded += [task for lang in languages if (task := belebele_task_name(lang))]
        elif name in STUDY_TASKS:
            expanded += [task for lang in seven if (task := STUDY_TASKS[name][lang])]
        else:
            expanded.append(name)
    return list(dict.fromkeys(expanded))


def split_list(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """'belebele,arc' or ['belebele,arc', 'proxy'] -> ['belebele', 'arc', 'proxy']."""
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def check_task_name(name: str) -> None:
    """Cheap checks only; whether lm-eval knows the name is checked before any weights load."""
    if not isinstance(name, str) or not _TASK_NAME.match(name):
        raise ConfigError(f"eval.tasks: '{name}' is not a task name or shorthand ({', '.join(TASK_SHORTHANDS)})")
    for prefix in _NAMED_PER_LANGUAGE:
        lang = name.removeprefix(prefix)
        if name.startswith(prefix) and lang not in LANGUAGES:
            raise ConfigError(f"eval.tasks: unknown language '{lang}' in '{name}'; valid: {', '.join(LANGUAGES)}")
    for prefix, families, what in ((PROBE_PREFIX, PROBE_FAMILIES, "probe"), (CLDR_PREFIX, CLDR_FAMILIES, "CLDR probe")):
        if name.startswith(prefix) and _family_parts(name, prefix, families) is None:
            family, _, lang = name.removeprefix(prefix).rpartition("_")
            if family not in families:
                raise ConfigError(
                    f"eval.tasks: '{name}' names no {what} family; valid: {prefix}<family>_<language> with "
                    f"family one of {', '.join(families)}"
                )
            raise ConfigError(f"eval.tasks: unknown language '{lang}' in '{name}'; valid: {', '.join(LANGUAGES)}")
    config = name.removeprefix(BELEBELE_PREFIX)
    if name.startswith(BELEBELE_PREFIX) and _FLORES_CODE.match(config):
        check_belebele_config(config, "eval.tasks")
    lang = name.removeprefix(MKQA_PREFIX)
    if name.startswith(MKQA_PREFIX) and LANGUAGE_TABLE[lang].mkqa is None:
        raise ConfigError(f"eval.tasks: MKQA has no {LANGUAGE_TABLE[lang].name}, so there is no {name}")
