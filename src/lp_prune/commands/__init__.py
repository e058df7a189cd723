"""Subcommands of `lp-prune`, in COMMANDS with their one-line help (what `lp-prune --help` lists, read
without importing any command). Each module's `HELP` is its line here; it defines
`add_arguments(parser)` and `execute(options) -> int`. A module with an `OPTIONS` dataclass gets that
dataclass (its fields are the flags, their docstrings the help); `run` and `estimate` get the parsed
namespace (RunConfig's keys plus their own flags). Heavy imports stay inside execute()."""

COMMANDS: dict[str, str] = {
    "run": "Prune one model with one method and calibration language; measure and save the run.",
    "sweep": "Run a W&B sweep file locally (grid, random or bayes; offline W&B), skipping finished runs.",
    "compare": (
        "Compare runs (run or sweep directories, W&B sweeps or groups): perplexity, mask IoU, SNR; report + W&B."
    ),
    "analyze": (
        "Analyse runs against their dense model: cumulative SNR per layer and language, LSAR language-specific "
        "vs agnostic error, LAPE neurons, mask disagreement; plots, report, JSON + W&B."
    ),
    "study": (
        "Run the study's grid (or given grid sweeps), analyse and compare it: the claims beside the study's, "
        "one report."
    ),
    "eval": "Evaluate a run's pruned model (or any model) on downstream tasks with lm-eval.",
    "estimate": "Estimate a run's memory per process from the model's config (no weights load).",
    "configs": "List the packaged configs (--config) and sweep files (sweep FILE), with a line about each.",
}
