"""Languages beyond the study's seven: any mC4 code for calibration and perplexity (data.source mc4,
files), any Belebele config for downstream evaluation; packaged text and unknown codes refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import lp_prune.evaluation.downstream as downstream_module
from lp_prune.analysis.compare.recipes import recipe_rows
from lp_prune.cli import main
from lp_prune.config import DataConfig, EvalConfig, RunConfig
from lp_prune.config.recipe import label_languages
from lp_prune.config.tasks import expand_tasks, task_language
from lp_prune.data import PruningDataModule
from lp_prune.errors import ConfigError
from lp_prune.evaluation.downstream import plan_tasks
from lp_prune.evaluation.downstream_step import DownstreamStep
from lp_prune.languages import BELEBELE_CONFIGS, LANGUAGE_TABLE, LANGUAGES, MC4_LANGUAGES, relation

DOCS = ["x" * 60 + " " + "y" * 60, "z" * 90, "w" * 70 + " " + "v" * 40] * 4


class FakeBuilder:
    """What datasets.load_dataset_builder returns: a Hub commit and a streaming reader of DOCS."""

    hash = "0123456789abcdef0123456789abcdef01234567"

    def __init__(self) -> None:
        self.splits: list[str] = []

    def as_streaming_dataset(self, split):
        import datasets

        self.splits.append(split)
        n = len(DOCS)
        columns = {
            "text": DOCS,
            "timestamp": ["2020-01-01T00:00:00Z"] * n,
            "url": [f"https://e.org/{i}" for i in range(n)],
        }
        return datasets.Dataset.from_dict(columns).to_iterable_dataset(num_shards=2)


@pytest.fixture
def hub_calls(monkeypatch):
    """datasets.load_dataset_builder replaced: records (dataset, config, split) and streams DOCS."""
    import datasets

    builders: list[tuple[str, str, FakeBuilder]] = []

    def load_dataset_builder(path, name):
        builders.append((path, name, FakeBuilder()))
        return builders[-1][2]

    monkeypatch.setattr(datasets, "load_dataset_builder", load_dataset_builder)
    return lambda: [(path, name, split) for path, name, b in builders for split in b.splits]


def test_shipped_lists_hold_the_seven_and_no_repeats():
    assert len(MC4_LANGUAGES) == 108 and len(set(MC4_LANGUAGES)) == 108
    assert len(BELEBELE_CONFIGS) == 122 and len(set(BELEBELE_CONFIGS)) == 122
    assert set(LANGUAGES) <= set(MC4_LANGUAGES)
    assert {lang.belebele for lang in LANGUAGE_TABLE.values()} <= set(BELEBELE_CONFIGS)
    assert {"fr", "hi", "ja", "hi-Latn", "iw", "fil"} <= set(MC4_LANGUAGES) and "en-multi" not in MC4_LANGUAGES


def test_belebele_list_matches_lm_evals_tasks():
    """Every shipped config is an lm-eval task belebele_<config> reading that config of facebook/belebele."""
    import lm_eval

    folder = Path(lm_eval.__file__).parent / "tasks" / "belebele"
    template = yaml.safe_load((folder / "_default_template_yaml").read_text())
    assert template["dataset_path"] == "facebook/belebele"
    tasks = {}
    for path in folder.glob("belebele_*.yaml"):
        spec = yaml.safe_load(path.read_text())
        tasks[spec["task"]] = spec["dataset_name"]
    assert tasks == {f"belebele_{config}": config for config in BELEBELE_CONFIGS}


def test_mc4_calibration_and_evaluation_in_a_new_language(hub_calls, char_tokenizer):
    config = DataConfig(
        source="mc4",
        calibration_language="fr",
        eval_languages=["fr", "hi-Latn", "en"],
        nsamples=3,
        seqlen=16,
        eval_windows=1,
        eval_seqlen=16,
    )
    config.validate()
    data = PruningDataModule(config, char_tokenizer)
    data.setup()
    assert hub_calls() == [
        ("allenai/c4", "fr", "train"),
        ("allenai/c4", "fr", "validation"),
        ("allenai/c4", "hi-Latn", "validation"),
        ("allenai/c4", "en-multi", "validation"),  # mC4's English, as before
    ]
    assert data.calibration_languages == ["fr"] * 3 and data.eval_language_order == ["fr", "hi-Latn", "en"]
    assert data.calibration_record["sources"]["fr"]["config"] == "fr"


def test_mixes_and_weights_take_mc4_codes():
    config = RunConfig(data=DataConfig(source="mc4", calibration_language="fr:2,sw:2", eval_languages=["fr"]))
    config.prune.statistics, config.prune.language_weights = "weighted", {"fr": 0.5, "sw": 0.5}
    config.validate()
    assert config.recipe().counts == {"fr": 2, "sw": 2}
    assert label_languages("fr+en mc4") == ("fr", "en")


def test_files_source_takes_a_new_language(tmp_path, char_tokenizer):
    text = tmp_path / "fr.txt"
    text.write_text("\n\n".join(f"Paragraphe {i} : le chat dort sur le mur." for i in range(200)), encoding="utf-8")
    config = DataConfig(source="files", files={"fr": str(text)}, calibration_language="fr", eval_languages=["fr"])
    config.nsamples, config.seqlen, config.eval_windows, config.eval_seqlen = 2, 16, 1, 16
    data = PruningDataModule(config, char_tokenizer)
    data.setup()
    assert len(data.calibration) == 2 and data.eval_language_order == ["fr"]


@pytest.mark.parametrize("source", ["packaged", "generated"])
def test_packaged_text_is_refused_for_a_new_language_in_one_line(source):
    config = DataConfig(source=source, calibration_language="fr")
    with pytest.raises(ConfigError) as err:
        RunConfig(data=config).validate()
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "ar, de, en, es, ru, sw, zh" in message and "'fr'" in message


def test_packaged_evaluation_is_refused_for_a_new_language(capsys):
    assert main(["run", "--data.eval_languages", "[en,fr]"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "data.source packaged has text in ar, de, en, es, ru, sw, zh only, not 'fr'" in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DataConfig(source="mc4", calibration_language="xx"), "unknown language 'xx'"),
        (lambda: DataConfig(source="mc4", eval_languages=["fr", "french"]), "unknown language 'french'"),
        (lambda: DataConfig(source="mc4", calibration_language="en-multi"), "unknown language 'en-multi'"),
        (lambda: EvalConfig(tasks=["belebele"], languages=["xyz_Latn"]), "unknown language 'xyz_Latn'"),
        (lambda: EvalConfig(tasks=["belebele_fra_Latm"]), "'fra_Latm' is not a Belebele config"),
    ],
)
def test_bogus_codes_are_refused_in_one_line(make, message):
    with pytest.raises(ConfigError) as err:
        make().validate()
    assert message in str(err.value) and len(str(err.value).splitlines()) == 1


def test_belebele_shorthand_expands_over_belebele_configs():
    languages = ["sw", "fra_Latn", "jpn_Jpan", "fr"]  # fr: an mC4 code, no task of the study's names it
    assert expand_tasks(["belebele"], languages) == ["belebele_swh_Latn", "belebele_fra_Latn", "belebele_jpn_Jpan"]
    # the other families exist for the seven only; the proxies and the probe are built from their text
    assert expand_tasks(["arc", "proxy", "mkqa"], ["fra_Latn", "fr"]) == []
    assert expand_tasks(["study"], ["fra_Latn"]) == ["belebele_fra_Latn"]
    assert task_language("belebele_fra_Latn") == "fra_Latn" and task_language("belebele_swh_Latn") == "sw"


def test_run_config_plans_lm_eval_tasks_for_belebele_configs(monkeypatch, char_tokenizer):
    """The names handed to lm-eval's index check (no index is built: it is recorded)."""
    checked = []
    monkeypatch.setattr(downstream_module, "_check_known", lambda tasks, plan: checked.append(list(tasks)))
    config = RunConfig(eval=EvalConfig(tasks=["belebele"], languages=["fra_Latn", "hin_Deva", "en"]))
    config.validate()
    step = DownstreamStep(config, char_tokenizer)
    assert step.plan.tasks == ("belebele_fra_Latn", "belebele_hin_Deva", "belebele_eng_Latn")
    assert checked == [["belebele_fra_Latn", "belebele_hin_Deva", "belebele_eng_Latn"]]
    assert step.plan.needs_builtin and not step.plan.local_only
    plan = plan_tasks(["belebele_zho_Hant"], ["en"], 0.2)  # a task named directly
    assert plan.tasks == ("belebele_zho_Hant",)


def test_analysis_tables_take_new_languages_and_reference_sets():
    assert relation("fr", "en") == "other" and relation("de", "fr") == "other" and relation("fr", "fr") == "self"
    matrix = {
        "dense": {"en": 10.0, "sw": 20.0, "fr": 30.0, "wikitext2": 40.0},
        "en": {"en": 11.0, "sw": 25.0, "fr": 33.0, "wikitext2": 44.0},
        "fr": {"en": 12.0, "sw": 24.0, "fr": 31.0, "wikitext2": 45.0},
        "en+fr mc4": {"en": 11.5, "sw": 24.0, "fr": 31.5, "wikitext2": 44.5},
    }
    rows = recipe_rows(matrix, {}, {}, {}, task_language)
    assert [(row.target, row.recipe) for row in rows] == [("en", "en"), ("en", "en+fr mc4")]
    # the others' geometric mean is over languages: sw and fr, not the reference set
    assert rows[0].others_perplexity == pytest.approx((25.0 * 33.0) ** 0.5)


def test_compare_and_analyze_take_runs_calibrated_on_a_new_language(tiny_model_dir, tmp_path):
    import datasets

    texts = {}
    for lang, word in (("en", "The cat sleeps on the warm wall"), ("fr", "Le chat dort sur le mur chaud")):
        texts[lang] = tmp_path / f"{lang}.txt"
        texts[lang].write_text("\n\n".join(f"{word}, day {i}." for i in range(300)), encoding="utf-8")
    wiki = tmp_path / "test-00000-of-00001.parquet"
    datasets.Dataset.from_dict({"text": [f" = Heading {i} = \n" for i in range(200)]}).to_parquet(str(wiki))
    for lang in ("en", "fr"):
        argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(tmp_path / "runs" / lang)]
        argv += ["--data.source", "files", "--data.files", f"{{en: {texts['en']}, fr: {texts['fr']}}}"]
        argv += ["--data.calibration_language", lang, "--data.eval_languages", "[en, fr]"]
        argv += ["--data.nsamples", "2", "--data.seqlen", "16", "--data.eval_windows", "1", "--data.eval_seqlen", "16"]
        argv += ["--data.reference_sets", "[wikitext2]", "--data.reference_files.wikitext2", str(wiki)]
        argv += ["--data.reference_seqlen", "32", "--data.reference_windows", "2", "--wandb.mode", "disabled"]
        argv += ["--prune.method", "wanda"]  # analyze rebuilds a Wanda run from its masks
        assert main(argv) == 0
    out = tmp_path / "report"
    assert main(["compare", str(tmp_path / "runs"), "--out", str(out), "--no_wandb"]) == 0
    (matrix,) = json.loads((out / "tables.json").read_text())["perplexity"].values()
    assert list(matrix) == ["dense", "en files", "fr files"] and set(matrix["fr files"]) == {"en", "fr", "wikitext2"}
    analysis = ["analyze", str(tmp_path / "runs"), "--languages", "[en, fr]", "--windows", "2", "--seqlen", "16"]
    assert main([*analysis, "--out", str(tmp_path / "analysis"), "--no_wandb"]) == 0
    (structure,) = json.loads((tmp_path / "analysis" / "analysis.json").read_text())["mask_structure"].values()
    assert structure["languages"] == ["en", "fr"]
