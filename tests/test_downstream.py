"""Downstream evaluation through lm-eval: offline proxy tasks, the study's task table, MKQA scoring,
the run step (summary.json + offline W&B) and `lp-prune eval`. CPU, offline, tiny models."""

import json
import re

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from lp_prune.cli import main
from lp_prune.config import EvalConfig
from lp_prune.config.tasks import STUDY_TASKS, expand_tasks
from lp_prune.data.text import packaged_documents, split_documents
from lp_prune.errors import ConfigError
from lp_prune.evaluation import mkqa
from lp_prune.evaluation.downstream import (
    PACKAGED_TASKS,
    TaskPlan,
    parse_output,
    plan_tasks,
    run_lm_eval,
    task_manager,
)
from lp_prune.evaluation.proxy_tasks import (
    DEFAULT_ITEMS,
    DISTRACTORS,
    language_items,
    proxy_folder,
    write_proxy_tasks,
)
from lp_prune.languages import LANGUAGES
from wandb_offline import closed_log, find_offline_runs, read_summary

SMALL_RUN = [
    "--data.nsamples",
    "4",
    "--data.seqlen",
    "32",
    "--data.batch_size",
    "2",
    "--data.eval_windows",
    "2",
    "--data.eval_seqlen",
    "32",
    "--data.eval_languages",
    "[en, sw]",
    "--eval.perplexity",
    "false",
]


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


# --- proxy tasks ---------------------------------------------------------------------------------------


def test_proxy_tasks_are_deterministic(tmp_path):
    first = write_proxy_tasks(LANGUAGES, 0.2, folder=tmp_path / "a")
    second = write_proxy_tasks(LANGUAGES, 0.2, folder=tmp_path / "b")
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    assert len(names) == 2 * len(LANGUAGES)
    for name in names:  # identical but for the folder the YAML names its data file in
        assert (first / name).read_text().replace(str(first), "") == (second / name).read_text().replace(
            str(second), ""
        ), name
    assert proxy_folder(0.2) != proxy_folder(0.5)  # another split is another set of files


@pytest.mark.parametrize("lang", LANGUAGES)
def test_proxy_items_come_from_held_out_text_only(lang):
    calibration, evaluation = split_documents(packaged_documents(lang), 0.2)
    held_out, calibration_text = squeeze("".join(evaluation)), "\n".join(calibration)
    items = language_items(lang, 0.2)
    assert DEFAULT_ITEMS is None and len(items) >= 60  # every item the held-out text allows
    assert len({item.id for item in items}) == len(items)
    assert language_items(lang, 0.2, n_items=20) == items[:20]  # a limit takes the first of a seeded order
    for item in items:
        assert len(set(item.choices)) == DISTRACTORS + 1 and 0 <= item.label <= DISTRACTORS
        truth = item.choices[item.label]
        assert squeeze(item.context + truth) in held_out  # the true continuation really follows
        for text in (item.context, *item.choices):
            assert squeeze(text) in held_out
            assert text not in calibration_text


def test_proxy_tasks_run_through_lm_eval_without_the_hub(char_tokenizer, monkeypatch, no_network):
    import datasets
    import huggingface_hub.constants

    from tiny_models import tiny_model

    # Start "online": the evaluation itself must switch the Hub off, and restore it afterwards.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    seen = []
    load_dataset = datasets.load_dataset

    def spy(*args, **kwargs):
        import os

        seen.append((os.environ.get("HF_HUB_OFFLINE"), huggingface_hub.constants.HF_HUB_OFFLINE))
        return load_dataset(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    model = tiny_model("llama", vocab_size=len(char_tokenizer), attention="sdpa")
    model.config.max_position_embeddings = 1024
    plan = plan_tasks(["proxy"], ["en", "sw", "zh"], 0.2)
    assert plan.local_only and not plan.needs_builtin

    results = parse_output(run_lm_eval(model, char_tokenizer, plan, limit=6, batch_size=4))

    assert set(results) == {"lp_prune_proxy_en", "lp_prune_proxy_sw", "lp_prune_proxy_zh"}
    for task, result in results.items():
        assert result["language"] == task.rsplit("_", 1)[1]
        assert result["n"] == 6
        for metric in ("acc", "acc_norm"):
            assert 0.0 <= result[metric] <= 1.0
            assert result[f"{metric}_stderr"] >= 0.0
            # Per-item scores: one 0/1 per item, averaging to lm-eval's own accuracy.
            per_item = result["items"][metric]
            assert len(per_item) == 6 and set(per_item) <= {0, 1}
            assert sum(per_item) / 6 == pytest.approx(result[metric])
        items = {item.id for item in language_items(result["language"], 0.2)[:6]}
        assert set(result["items"]["ids"]) == items  # the items' own ids, the first 6 of the task file
    assert seen and all(flags == ("1", True) for flags in seen)
    assert no_network == []
    assert not huggingface_hub.constants.HF_HUB_OFFLINE  # restored


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_focused_scoring_matches_lm_eval(arch, char_tokenizer):
    """FocusedHFLM computes logits at the scored positions only; the scores must be HFLM's own."""
    from lm_eval.models.huggingface import HFLM

    from lp_prune.evaluation.focused_lm import FocusedHFLM
    from tiny_models import tiny_model

    model = tiny_model(arch, vocab_size=len(char_tokenizer), attention="sdpa")
    requests = []
    short = sorted(language_items("en", 0.2), key=lambda item: len(item.context) + max(map(len, item.choices)))
    for item in short[:3]:  # the tiny model's context is 128 tokens (characters here)
        context = char_tokenizer(item.context, add_special_tokens=False)["input_ids"]
        for choice in item.choices:
            continuation = char_tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
            requests.append(((item.context, " " + choice), context, continuation))
    requests += [(("ab", "c"), [40, 41], [42]), (None, [1], [43, 44, 45])]  # one token; a rolling window
    expected = HFLM(pretrained=model, tokenizer=char_tokenizer, batch_size=4)._loglikelihood_tokens(requests)
    focused = FocusedHFLM(pretrained=model, tokenizer=char_tokenizer, batch_size=4)
    for (want, want_greedy), (got, got_greedy) in zip(expected, focused._loglikelihood_tokens(requests), strict=True):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-4) and got_greedy == want_greedy


# --- the study's tasks ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study_plan():
    """Every real task of the study, checked against lm-eval's index (names only: downloads nothing)."""
    return plan_tasks(["study"], LANGUAGES, 0.2)


def test_real_task_names_resolve_in_lm_eval_index(study_plan, no_network):
    index = task_manager(study_plan).task_index
    expected = {name for table in STUDY_TASKS.values() for name in table.values() if name}
    assert set(study_plan.tasks) == expected
    assert all(name in index for name in expected)
    assert index["mkqa_zh"].yaml_path.parent == PACKAGED_TASKS / "mkqa"
    for lang in LANGUAGES:
        assert STUDY_TASKS["belebele"][lang] in index
    # What the table calls missing is missing in lm-eval too (no faked substitutes).
    assert not {"arc_sw", "hellaswag_sw", "hellaswag_zh", "m_mmlu_sw", "mkqa_sw"} & set(index)
    assert not study_plan.local_only
    assert no_network == []


def test_unknown_task_is_a_config_error(study_plan):
    with pytest.raises(ConfigError, match="unknown task 'belebel'"):
        plan_tasks(["belebel", "mkqa"], ["en"], 0.2)


def test_shorthands_expand_per_language():
    assert expand_tasks(["arc"], ["en", "sw", "zh"]) == ["arc_challenge", "arc_zh"]  # no Swahili ARC
    assert expand_tasks(["hellaswag", "mkqa"], ["sw", "zh"]) == ["mkqa_zh"]
    assert expand_tasks(["proxy", "lp_prune_proxy_en", "belebele"], ["en"]) == [
        "lp_prune_proxy_en",
        "belebele_eng_Latn",
    ]
    assert len(expand_tasks(["study"], LANGUAGES)) == 7 + 6 + 5 + 6 + 6
    # proxy_calibration: only the run's calibration languages, whatever the evaluation languages
    assert expand_tasks(["proxy_calibration"], LANGUAGES, ["sw"]) == ["lp_prune_proxy_sw"]
    assert expand_tasks(["proxy_calibration"], ["en"], ["de", "zh"]) == ["lp_prune_proxy_de", "lp_prune_proxy_zh"]
    assert expand_tasks(["proxy_calibration"], LANGUAGES) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (EvalConfig(tasks=["lp_prune_proxy_fr"]), "unknown language 'fr'"),
        (EvalConfig(tasks=["mkqa_sw"]), "MKQA has no Swahili"),
        (EvalConfig(tasks=["two words"]), "is not a task name or shorthand"),
        (EvalConfig(limit=0), "eval.limit must be at least 1"),
        (EvalConfig(num_fewshot=-1), "eval.num_fewshot must be 0 or more"),
        (EvalConfig(batch_size=0), "eval.batch_size must be at least 1"),
    ],
)
def test_eval_config_validation(config, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config.validate()
    assert EvalConfig().tasks == []  # default: no downstream tasks


# --- MKQA ------------------------------------------------------------------------------------------------


def test_mkqa_answer_matching():
    assert mkqa.exact_match("The Eiffel Tower.", ["eiffel tower"], "en") == 1.0
    assert mkqa.exact_match("Die Hauptstadt Berlin", ["Berlin"], "de") == 0.0
    assert mkqa.token_f1("Die Hauptstadt Berlin", ["Berlin"], "de") == pytest.approx(2 / 3)
    assert mkqa.exact_match("北京。", ["北京"], "zh") == 1.0
    assert mkqa.token_f1("北京市", ["北京"], "zh") == pytest.approx(0.8)  # one character per token
    answers = [
        {"type": 2, "text": None, "aliases": []},  # unanswerable: no string to match
        {"type": 4, "text": "1945", "aliases": ["in 1945"]},
        {"type": "entity", "text": "Paris", "aliases": None},
    ]
    assert mkqa.gold_answers(answers) == ["1945", "in 1945", "Paris"]
    doc = {"answers": ["1945", "in 1945"], "language": "en"}
    assert mkqa.process_results(doc, [" in 1945\nQuestion: next"]) == {"exact_match": 1.0, "f1": 1.0}


def test_mkqa_task_yaml_runs_on_local_data(tmp_path, char_tokenizer, no_network):
    """The shipped MKQA template through lm-eval, with its data file swapped for a local MKQA-shaped one."""
    from tiny_models import tiny_model

    rows = [
        {
            "queries": {"en": f"What is {i}?", "de": f"Was ist {i}?", "zh_cn": "什么？"},
            "answers": {
                "en": [{"type": 4, "entity": None, "text": str(i), "aliases": [f"number {i}"]}],
                "de": [{"type": 2, "entity": None, "text": None, "aliases": []}],
                "zh_cn": [{"type": 0, "entity": "Q1", "text": "北京", "aliases": []}],
            },
        }
        for i in range(4)
    ]
    (tmp_path / "mkqa.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "mkqa_local_en.yaml").write_text(
        f"include: {PACKAGED_TASKS / 'mkqa' / '_mkqa_template_yaml'}\n"
        "task: mkqa_local_en\n"
        "process_docs: !function lp_prune.evaluation.mkqa.process_docs_en\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    train: {tmp_path / 'mkqa.jsonl'}\n"
    )
    model = tiny_model("llama", vocab_size=len(char_tokenizer), attention="sdpa")
    plan = TaskPlan(("mkqa_local_en",), (tmp_path,), needs_builtin=False, local_only=True)
    result = parse_output(run_lm_eval(model, char_tokenizer, plan, limit=2, num_fewshot=1))["mkqa_local_en"]
    assert result["n"] == 2
    assert 0.0 <= result["exact_match"] <= 1.0 and 0.0 <= result["f1"] <= 1.0
    assert no_network == []


# --- in a run, and `lp-prune eval` -----------------------------------------------------------------------


def test_run_stores_downstream_in_summary_and_wandb(eval_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--eval.tasks", "[proxy]", "--eval.limit", "3", "--wandb.mode", "offline", "--save_model", "true"]
    assert main(["run", "--model.name", str(eval_model_dir), "--out", str(out), *SMALL_RUN, *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    downstream = summary["downstream"]
    assert set(downstream) == {"dense", "pruned"}
    for stage in ("dense", "pruned"):
        assert set(downstream[stage]) == {"lp_prune_proxy_en", "lp_prune_proxy_sw"}
        for result in downstream[stage].values():
            assert 0.0 <= result["acc"] <= 1.0 and result["n"] == 3
    assert {"downstream_dense", "downstream_pruned"} <= set(summary["timings_s"])

    (run,) = find_offline_runs(out / "wandb")
    wandb_summary = read_summary(closed_log(run))
    assert wandb_summary["acc/pruned/lp_prune_proxy_sw"] == pytest.approx(
        downstream["pruned"]["lp_prune_proxy_sw"]["acc"]
    )
    assert wandb_summary["acc_norm/dense/lp_prune_proxy_en"] == pytest.approx(
        downstream["dense"]["lp_prune_proxy_en"]["acc_norm"]
    )
    table = wandb_summary["downstream"]  # the table: stage x task x metric (acc, acc_norm)
    assert table["_type"] == "table-file" and table["nrows"] == 2 * 2 * 2

    # `lp-prune eval` on the same run (saved model): results merge into summary.json.
    capsys.readouterr()
    assert main(["eval", str(out), "--tasks", "[lp_prune_proxy_en]", "--limit", "2", "--dense", "true"]) == 0
    printed = capsys.readouterr().out
    assert "lp_prune_proxy_en" in printed and "acc=" in printed
    merged = json.loads((out / "summary.json").read_text())["downstream"]
    assert merged["pruned"]["lp_prune_proxy_en"]["n"] == 2  # replaced
    assert merged["pruned"]["lp_prune_proxy_sw"]["n"] == 3  # kept
    assert merged["dense"]["lp_prune_proxy_en"]["n"] == 2


def test_eval_command_applies_masks_and_reports_errors(eval_model_dir, tmp_path, capsys):
    wanda, sparsegpt = tmp_path / "wanda", tmp_path / "sgpt"
    base = ["run", "--model.name", str(eval_model_dir), *SMALL_RUN, "--wandb.mode", "disabled"]
    assert main([*base, "--out", str(wanda), "--prune.method", "wanda"]) == 0
    assert main([*base, "--out", str(sparsegpt)]) == 0
    assert "downstream" not in json.loads((wanda / "summary.json").read_text())  # default: no tasks

    assert main(["eval", str(wanda), "--tasks", "[proxy]", "--limit", "2", "--languages", "[sw]"]) == 0
    result = json.loads((wanda / "summary.json").read_text())["downstream"]["pruned"]["lp_prune_proxy_sw"]
    assert 0.0 <= result["acc"] <= 1.0 and result["language"] == "sw"
    capsys.readouterr()

    bad = [
        ([str(sparsegpt)], "--save_model true"),
        ([str(wanda), "--tasks", "[lp_prune_proxy_fr]"], "unknown language 'fr'"),
        ([str(wanda), "--limit", "0"], "eval.limit must be at least 1"),
        ([str(wanda), "--languages", "[xx]"], "unknown language 'xx'"),
        ([str(tmp_path / "nowhere")], "no such folder"),
    ]
    for args, message in bad:
        assert main(["eval", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and err.startswith("lp-prune: error:"), err


def test_eval_command_on_a_model_folder(eval_model_dir, capsys):
    assert main(["eval", str(eval_model_dir), "--tasks", "[proxy]", "--languages", "[zh]", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"lp_prune_proxy_zh\s+zh\s+model\s+2\s+acc=", out), out


def test_per_item_scores_use_item_ids_and_keep_filters_apart():
    from lp_prune.evaluation.downstream import per_item_scores

    samples = {
        "proxy": [
            {"doc_id": 1, "doc": {"id": "en-3-4"}, "filter": "none", "metrics": ["acc"], "acc": 0.0},
            {"doc_id": 0, "doc": {"id": "en-1-2"}, "filter": "none", "metrics": ["acc"], "acc": 1.0},
        ],
        "qa": [
            {"doc_id": 0, "doc": {"q": "a"}, "filter": "none", "metrics": ["f1"], "f1": 0.5},
            {"doc_id": 0, "doc": {"q": "a"}, "filter": "strict", "metrics": ["f1"], "f1": 1.0},
        ],
    }
    assert per_item_scores(samples) == {
        "proxy": {"ids": ["en-1-2", "en-3-4"], "acc": [1, 0]},
        "qa": {"ids": [0], "f1": [0.5], "f1/strict": [1]},
    }


def test_dense_downstream_is_evaluated_once_per_model_and_task_set(eval_model_dir, tmp_path, monkeypatch):
    """Sweeps prune one model many times: the dense model's lm-eval output is read back from the
    cache; the pruned model, another limit or cache_dense false evaluate again."""
    from lp_prune.config import RunConfig
    from lp_prune.evaluation import downstream_step
    from lp_prune.storage.phase_timer import PhaseTimer

    monkeypatch.setenv("LP_PRUNE_CACHE", str(tmp_path / "cache"))
    calls = []
    real = downstream_step.run_lm_eval

    def counting(*args, **kwargs):
        calls.append(kwargs["limit"])
        return real(*args, **kwargs)

    monkeypatch.setattr(downstream_step, "run_lm_eval", counting)
    model = AutoModelForCausalLM.from_pretrained(eval_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(eval_model_dir)

    def evaluated(stage: str, limit: int = 2, cache_dense: bool = True) -> dict:
        config = RunConfig()
        config.model.name = str(eval_model_dir)
        config.data.eval_languages = ["en"]
        config.eval.tasks, config.eval.limit, config.eval.cache_dense = ["proxy"], limit, cache_dense
        step = downstream_step.DownstreamStep(config, tokenizer)
        step.evaluate(stage, model, PhaseTimer())
        return step.results[stage]

    first = evaluated("dense")
    assert evaluated("dense") == first and calls == [2]  # read back, the same results
    assert (tmp_path / "cache" / "dense_downstream").is_dir()
    evaluated("pruned")
    evaluated("pruned")
    assert calls == [2, 2, 2]  # a pruned model is never read from the cache
    evaluated("dense", limit=3)
    evaluated("dense", cache_dense=False)
    assert calls == [2, 2, 2, 3, 2]
    for entry in (tmp_path / "cache" / "dense_downstream").glob("*.json"):
        entry.write_text("{}")  # JSON, but not lm-eval's output: evaluated again, not a traceback
    assert evaluated("dense") == first and calls == [2, 2, 2, 3, 2, 2]
