"""lm-eval as its users expect: their own task folders (include_path), comma-separated task lists,
and lm-eval's own results kept as JSON (merged by a later `lp-prune eval`). CPU, offline, tiny models."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lp_prune.cli import main
from lp_prune.config import EvalConfig
from lp_prune.config.tasks import split_list
from lp_prune.errors import ConfigError
from lp_prune.evaluation.downstream import (
    LM_EVAL_RESULTS_FILE,
    lm_eval_json,
    merge_lm_eval_output,
    plan_tasks,
    run_lm_eval,
)
from quiz_tasks import write_quiz_task

QUESTIONS = [("The sky is", ["blue", "green", "loud"], 0), ("Two plus two is", ["five", "four", "red"], 1)]
QUESTIONS += [("Water is", ["dry", "wet", "square"], 1), ("Fire is", ["hot", "cold", "blue"], 0)]


@pytest.fixture
def user_tasks(tmp_path) -> Path:
    """A user's own lm-eval task folder: one multiple-choice task over a local JSON lines file."""
    return write_quiz_task(tmp_path / "my_tasks", "my_quiz", QUESTIONS, version="2.0")


# --- task lists ---------------------------------------------------------------------------------------


def test_comma_separated_task_lists_split_like_lm_eval():
    assert split_list("belebele,arc") == ["belebele", "arc"]
    assert split_list(" belebele , arc ,") == ["belebele", "arc"]
    assert split_list(["belebele,arc", "proxy"]) == ["belebele", "arc", "proxy"]
    assert EvalConfig(tasks="belebele,arc").tasks == ["belebele", "arc"]
    assert EvalConfig(tasks=["proxy"]).tasks == ["proxy"]


def test_comma_separated_tasks_on_the_command_line():
    from lp_prune.cli import build_parser
    from lp_prune.config import run_config_from

    parser = build_parser()
    for value, expected in [("belebele,arc", ["belebele", "arc"]), ("[proxy, mkqa]", ["proxy", "mkqa"])]:
        config = run_config_from(parser.instantiate_classes(parser.parse_args(["run", "--eval.tasks", value])).run)
        assert config.eval.tasks == expected
        assert config.to_dict()["eval"]["tasks"] == expected  # config.yaml and W&B get the list
    plan = plan_tasks("proxy,lp_prune_proxy_de", ["en", "sw"], 0.2)
    assert plan.tasks == ("lp_prune_proxy_en", "lp_prune_proxy_sw", "lp_prune_proxy_de")


# --- include_path -------------------------------------------------------------------------------------


def test_include_path_runs_the_users_own_task(user_tasks, char_tokenizer):
    from tiny_models import tiny_model

    plan = plan_tasks(["my_quiz"], ["en"], 0.2, include_path=[user_tasks])
    assert plan.tasks == ("my_quiz",) and user_tasks in plan.include_paths
    assert not plan.needs_builtin  # found in the user's folder: lm-eval's own index is not built
    model = tiny_model("llama", vocab_size=len(char_tokenizer), attention="sdpa")
    output = run_lm_eval(model, char_tokenizer, plan, limit=3)
    assert output["n-samples"]["my_quiz"] == {"original": len(QUESTIONS), "effective": 3}
    assert output["versions"]["my_quiz"] == 2.0
    assert 0.0 <= output["results"]["my_quiz"]["acc,none"] <= 1.0
    assert output["configs"]["my_quiz"]["dataset_kwargs"]["data_files"]["test"] == str(user_tasks / "items.jsonl")


def test_unknown_task_and_bad_include_path_are_config_errors(user_tasks, tmp_path):
    with pytest.raises(ConfigError, match="unknown task 'my_quiz'"):
        plan_tasks(["my_quiz"], ["en"], 0.2)  # without the folder lm-eval has no such task
    with pytest.raises(ConfigError, match="is not a folder of lm-eval task YAML files"):
        EvalConfig(tasks=["my_quiz"], include_path=str(tmp_path / "nowhere")).validate()
    EvalConfig(tasks=["my_quiz"], include_path=str(user_tasks)).validate()


def test_eval_command_takes_include_path_and_comma_lists(eval_model_dir, user_tasks, capsys):
    args = ["eval", str(eval_model_dir), "--tasks", "my_quiz,lp_prune_proxy_en", "--include_path", str(user_tasks)]
    assert main([*args, "--limit", "2", "--no_wandb"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"my_quiz\s+-\s+model\s+2\s+acc=", out), out
    assert re.search(r"lp_prune_proxy_en\s+en\s+model\s+2\s+acc=", out), out


# --- lm-eval's own results ------------------------------------------------------------------------------


def test_lm_eval_output_is_plain_json():
    import numpy as np
    import torch

    from lp_prune.evaluation import mkqa

    raw = {
        "results": {"t": {"acc,none": np.float64(0.5), "acc_stderr,none": float("nan"), "alias": "t"}},
        "config": {"model_dtype": torch.float32, "seeds": (1, 2)},
        "configs": {"t": {"process_results": mkqa.process_results, "n": np.int64(3)}},
    }
    safe = lm_eval_json(raw)
    assert json.loads(json.dumps(safe, allow_nan=False)) == {
        "results": {"t": {"acc,none": 0.5, "acc_stderr,none": None, "alias": "t"}},
        "config": {"model_dtype": "torch.float32", "seeds": [1, 2]},
        "configs": {"t": {"process_results": "lp_prune.evaluation.mkqa.process_results", "n": 3}},
    }


def test_later_evaluations_merge_task_by_task():
    first = {"results": {"a": {"acc,none": 0.1}, "b": {"acc,none": 0.2}}, "n-shot": {"a": 0, "b": 0}, "date": 1.0}
    second = {"results": {"b": {"acc,none": 0.9}}, "n-shot": {"b": 5}, "date": 2.0, "samples": None}
    merged = merge_lm_eval_output(first, second)
    assert merged["results"] == {"a": {"acc,none": 0.1}, "b": {"acc,none": 0.9}}
    assert merged["n-shot"] == {"a": 0, "b": 5}
    assert merged["date"] == 2.0  # run-level fields describe the latest evaluation


def test_run_and_eval_keep_lm_eval_results(eval_model_dir, tmp_path, capsys):
    from wandb_offline import closed_log, find_offline_runs, iter_records, read_summary

    out = tmp_path / "run"
    small = ["--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2", "--eval.perplexity", "false"]
    small += ["--data.eval_languages", "[en, sw]", "--eval.tasks", "proxy", "--eval.limit", "2"]
    run_args = ["--wandb.mode", "disabled", "--prune.method", "wanda", "--wandb.group", "grp"]
    assert main(["run", "--model.name", str(eval_model_dir), "--out", str(out), *small, *run_args]) == 0
    stored = json.loads((out / LM_EVAL_RESULTS_FILE).read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert set(stored) == {"dense", "pruned"}
    for stage in ("dense", "pruned"):
        output = stored[stage]
        assert "samples" not in output
        assert set(output["results"]) == {"lp_prune_proxy_en", "lp_prune_proxy_sw"}
        for task, result in output["results"].items():
            assert result["acc,none"] == summary["downstream"][stage][task]["acc"]
            assert output["n-samples"][task]["effective"] == 2 and output["n-shot"][task] == 0
            assert output["configs"][task]["output_type"] == "multiple_choice"
        assert output["config"]["limit"] == 2 and output["lm_eval_version"]

    # `lp-prune eval` afterwards: one task again with another limit; the file merges task by task.
    capsys.readouterr()
    assert main(["eval", str(out), "--tasks", "lp_prune_proxy_en", "--limit", "3"]) == 0
    printed = capsys.readouterr().out
    merged = json.loads((out / LM_EVAL_RESULTS_FILE).read_text())
    assert merged["pruned"]["n-samples"]["lp_prune_proxy_en"]["effective"] == 3  # replaced
    assert merged["pruned"]["n-samples"]["lp_prune_proxy_sw"]["effective"] == 2  # kept
    assert merged["dense"] == stored["dense"]  # not evaluated again
    acc = json.loads((out / "summary.json").read_text())["downstream"]["pruned"]["lp_prune_proxy_en"]["acc"]
    assert merged["pruned"]["results"]["lp_prune_proxy_en"]["acc,none"] == acc

    # ... and a W&B run of job type eval in the run's project and group, whose place is printed.
    (eval_run,) = find_offline_runs(out / "wandb")
    assert f"wandb sync {eval_run}" in printed
    info = next(r.run for r in iter_records(closed_log(eval_run)) if r.WhichOneof("record_type") == "run")
    assert (info.project, info.run_group, info.job_type) == ("lp_prune", "grp", "eval")
    assert read_summary(closed_log(eval_run))["acc/pruned/lp_prune_proxy_en"] == pytest.approx(acc)
