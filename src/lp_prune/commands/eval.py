"""`lp-prune eval RUN_DIR_OR_MODEL`: downstream tasks through lm-eval for a saved run or any model.

    lp-prune eval runs/my-run                           # the run's pruned model, proxy tasks
    lp-prune eval runs/my-run --tasks '[belebele]' --dense true --limit 100
    lp-prune eval gemma3-270m --tasks '[proxy]'         # a model: packaged name, folder or hub id

A run directory's pruned model comes from RUN_DIR/model (`--save_model true`), else from the dense
model with the saved masks applied (Wanda and magnitude only). Results go into the run's
summary.json under "downstream", lm-eval's own output into RUN_DIR/lm_eval_results.json, and a W&B
run of job type `eval` in the run's project and group; they are printed as a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser

from lp_prune.cli_support import add_options
from lp_prune.commands import COMMANDS
from lp_prune.config import DataConfig, EvalConfig, ModelConfig, WandbConfig
from lp_prune.config.tasks import check_task_language
from lp_prune.languages import LANGUAGES

HELP = COMMANDS["eval"]


@dataclass
class EvalOptions:
    """Options of `lp-prune eval`."""

    target: str
    """A run directory, or a model (packaged name, folder, hub id)."""
    tasks: list[str] | str = field(default_factory=lambda: ["proxy"])
    """Task names or shorthands (proxy, belebele, ...): a list, or comma-separated as lm-eval's --tasks."""
    include_path: list[str] | str | None = None
    """Your own lm-eval task folders (their !function entries are Python code: only this flag names them,
    never a run's config.yaml)."""
    limit: int | None = None
    """At most this many items per task."""
    num_fewshot: int = 0
    """Few-shot examples (0: zero-shot)."""
    batch_size: int = 8
    """lm-eval requests per forward pass."""
    languages: list[str] | None = None
    """Languages of shorthands (default: the run's): the seven, or Belebele configs such as fra_Latn."""
    dense: bool = False
    """Run directory: also evaluate the dense model."""
    trust_remote_code: bool = False
    """Let transformers run the model folder's own Python code; only this flag allows it, never a run's
    config.yaml."""
    no_wandb: bool = False
    """Do not log an eval run to W&B."""

    def eval_config(self) -> EvalConfig:
        return EvalConfig(
            tasks=self.tasks,
            limit=self.limit,
            num_fewshot=self.num_fewshot,
            batch_size=self.batch_size,
            include_path=self.include_path,
        )


OPTIONS = EvalOptions
CODE_FLAGS = {"model.trust_remote_code": "trust_remote_code", "eval.include_path": "include_path"}  # this command's


def add_arguments(parser: ArgumentParser) -> None:
    add_options(parser, EvalOptions, positional=("target",), switches=("--no_wandb",))


def is_run_directory(target: str) -> bool:
    path = Path(target)
    return path.is_dir() and (path / "config.yaml").is_file() and not (path / "config.json").is_file()


def execute(options: EvalOptions) -> int:
    eval_config = options.eval_config()
    eval_config.validate()
    for lang in options.languages or []:
        check_task_language(lang, "--languages")
    run_dir = Path(options.target) if is_run_directory(options.target) else None
    trust = options.trust_remote_code
    if run_dir is not None:
        downstream = evaluate_run(run_dir, eval_config, options.languages, options.dense, trust)
    else:
        downstream = {"model": evaluate_model(options.target, eval_config, options.languages, trust)}
    from lp_prune.evaluation.downstream import format_table

    print(format_table(downstream))
    if not options.no_wandb:
        print(log_eval_run(downstream, run_dir, options.target))
    return 0


def log_eval_run(downstream: dict[str, dict[str, Any]], run_dir: Path | None, target: str) -> str:
    """A W&B run of job type `eval` with the scores (summary `acc/<stage>/<task>`, ...) and the
    `downstream` table, in the run's project and group (a model: the default project)."""
    from lp_prune.evaluation.downstream_step import TABLE_COLUMNS, summary_values, table_rows
    from lp_prune.tracking import RunDirectory
    from lp_prune.tracking.run_labels import labelled
    from lp_prune.tracking.wandb_analysis import log_analysis_run

    wandb = labelled(RunDirectory(run_dir).read_config()) if run_dir else WandbConfig()  # the run's group
    name = f"eval-{(run_dir or Path(target)).name}"
    tables = {"downstream": (TABLE_COLUMNS, table_rows(downstream))}
    return log_analysis_run(
        wandb.project,
        wandb.group,
        name,
        tables,
        {},
        run_dir,  # a model: wandb's own place (WANDB_DIR, else ./wandb)
        job_type="eval",
        summary=summary_values(downstream),
    )


def evaluate_run(
    run_dir: Path, eval_config: EvalConfig, languages: list[str] | None, dense: bool, trust_remote_code: bool = False
) -> dict[str, dict[str, Any]]:
    """Evaluate the run's pruned (and with `dense`, its dense) model; merge into its summary.json.

    Code runs only where this command line asks (config.code_options): what the run's config.yaml asks
    for gets a warning line and is not done."""
    from lp_prune.config.code_options import warn_not_asked
    from lp_prune.evaluation.downstream import parse_output, write_lm_eval_results
    from lp_prune.models.loading import load_model, load_run_model, load_tokenizer_and_config
    from lp_prune.storage.files import read_json, write_json
    from lp_prune.tracking import RunDirectory

    run = RunDirectory.open(run_dir)
    given = {"model.trust_remote_code": trust_remote_code, "eval.include_path": eval_config.include_paths}
    asked = {key: value for key, value in run.code_requests().items() if not given[key]}
    warn_not_asked(str(run.config), asked, CODE_FLAGS)
    run_config = run.read_config()  # proxies split the text as the run did
    model_config = replace(run_config.model, trust_remote_code=trust_remote_code)
    languages = languages or run_config.eval.languages or run_config.data.eval_languages
    plan = _plan(eval_config, languages, run_config.data.eval_fraction)
    outputs = {"pruned": _evaluate(*load_run_model(run.root, trust_remote_code=trust_remote_code), plan, eval_config)}
    if dense:
        tokenizer, _ = load_tokenizer_and_config(model_config)
        outputs["dense"] = _evaluate(load_model(model_config), tokenizer, plan, eval_config)
    results = {stage: parse_output(output) for stage, output in outputs.items()}
    summary = read_json(run.summary) if run.summary.is_file() else {}
    stored = summary.setdefault("downstream", {})
    for stage, stage_results in results.items():
        stored.setdefault(stage, {}).update(stage_results)
    write_json(run.summary, summary)
    lm_eval_file = write_lm_eval_results(run.root, outputs)
    print(f"Results written to {run.summary} (under 'downstream') and {lm_eval_file} (lm-eval's own output)")
    return results


def evaluate_model(
    name: str, eval_config: EvalConfig, languages: list[str] | None, trust_remote_code: bool = False
) -> dict[str, Any]:
    from lp_prune.evaluation.downstream import parse_output
    from lp_prune.models.loading import load_model, load_tokenizer_and_config

    model_config = ModelConfig(name=name, trust_remote_code=trust_remote_code)
    plan = _plan(eval_config, languages or list(LANGUAGES), DataConfig().eval_fraction)
    tokenizer, _ = load_tokenizer_and_config(model_config)
    return parse_output(_evaluate(load_model(model_config), tokenizer, plan, eval_config))


def _plan(eval_config: EvalConfig, languages: list[str], eval_fraction: float) -> Any:
    from lp_prune.evaluation.downstream import plan_tasks

    return plan_tasks(eval_config.tasks, languages, eval_fraction, include_path=eval_config.include_paths)


def _evaluate(model: Any, tokenizer: Any, plan: Any, eval_config: EvalConfig) -> dict[str, Any]:
    """lm-eval's own output (JSON-safe) for the plan on the model."""
    from lp_prune.evaluation.downstream import run_lm_eval

    return run_lm_eval(
        model,
        tokenizer,
        plan,
        limit=eval_config.limit,
        num_fewshot=eval_config.num_fewshot,
        batch_size=eval_config.batch_size,
    )
