"""One pruning run, end to end: load, measure dense, prune layer by layer, measure pruned, save.

Data flows one way: text -> windows -> layer inputs -> statistics -> masks and weights -> metrics
-> logs and the run directory.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lp_prune.calibration.checkpoint import LayerCheckpoint, layers_done, load_layer_results, progress_dir
from lp_prune.calibration.module import CalibrationOptions, LayerwiseCalibration
from lp_prune.calibration.observers import CalibrationRecorder, LayerProgressBar, PruningMetricsLogger
from lp_prune.calibration.pruner import LayerPruner
from lp_prune.calibration.schedule import Mode
from lp_prune.checks import preflight
from lp_prune.config import RunConfig, size_in_bytes
from lp_prune.data import PruningDataModule
from lp_prune.data.generated import cached_generate_calibration_mix, save_record
from lp_prune.data.record import write_calibration_files
from lp_prune.errors import ConfigError, Interrupted, UserError
from lp_prune.evaluation.downstream_step import DownstreamStep
from lp_prune.evaluation.perplexity import cached_dense_perplexity, evaluate_perplexity
from lp_prune.launcher import apply_launcher_environment
from lp_prune.memory import ModelShape, check_fits, device_kind, estimate_memory
from lp_prune.models.loading import load_model, load_tokenizer_and_config, max_positions
from lp_prune.pruning.owl import owl_sparsities
from lp_prune.pruning.statistics import window_weights
from lp_prune.runtime import release_memory
from lp_prune.tracking import RunDirectory, atomic_write_text, save_masks, save_model_streaming, write_json
from lp_prune.tracking import wandb_logger as tracking
from lp_prune.tracking.fingerprint import check_resumable, started_with
from lp_prune.tracking.summary import build_summary, log_results

RUN_DIR_ENV = "LP_PRUNE_RUN_DIR"  # rank 0's run directory, for the processes Lightning starts


def default_run_dir(config: RunConfig) -> Path:
    model = Path(config.model.name.rstrip("/")).name or "model"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    calibration = re.sub(r"[^\w+.-]+", "_", config.data.calibration_language)  # mixes: "en:64,sw:64"
    return Path("runs") / f"{model}-{config.prune.method}-{calibration}-{stamp}"


def run(config: RunConfig, resume: bool = False) -> Path:
    """Run the job described by `config`; return the run directory.

    resume=True continues an unfinished run in `config.out` from its last finished layer.
    Data parallel (devices x num_nodes > 1): Lightning starts the other processes at the first
    Trainer; they run this same function, and only rank 0 writes files or talks to W&B. Under
    `fabric run`, its LT_* choices fill in the config's defaults (lp_prune.launcher).
    """
    config = apply_launcher_environment(config)
    config.validate()
    timings: dict[str, float] = {}
    # Everything that can be wrong with the input is found before weights load or files are written.
    with _timed(timings, "prepare_data"):
        tokenizer, model_config = load_tokenizer_and_config(config.model)
        data = PruningDataModule(config.data, tokenizer, max_positions(model_config))
        data.setup()
        preflight(config, model_config)
        downstream = DownstreamStep(config, tokenizer)  # eval.tasks via lm-eval; no-op if empty
        _check_memory(config, model_config)
    del tokenizer  # data and downstream hold it until _run_in lets it go
    with _run_directory(config, model_config, resume) as run_dir:
        _run_in(run_dir, config, data, downstream, timings, resume)
    return run_dir.root


def _run_in(
    run_dir: RunDirectory,
    config: RunConfig,
    data: PruningDataModule,
    downstream: DownstreamStep,
    timings: dict[str, float],
    resume: bool,
) -> None:
    """Everything after the checks, inside the claimed run directory."""
    generated = config.data.source == "generated"  # the model writes its calibration text once loaded
    if is_rank_zero() and not generated:  # which text calibrates, and its token ids: rerunnable as tokens
        write_calibration_files(run_dir.root, data.calibration, data.calibration_record)
    if config.save_model and is_rank_zero():
        data.tokenizer.save_pretrained(run_dir.model)  # now, so the tokenizer need not stay beside the weights
    if downstream.plan is None and not generated:  # windows are built; lm-eval is its only later user
        data.tokenizer = downstream.tokenizer = None
        release_memory()  # a 262k-vocabulary tokenizer holds ~0.3 GB: return it before the weights load
    L.seed_everything(config.seed, verbose=False)
    with _timed(timings, "load_model"):
        model = load_model(config.model)
    if generated:
        with _timed(timings, "generate_calibration"):
            _generate_calibration(config, model, data, run_dir)

    logger = tracking.make_wandb_logger(config.wandb, run_dir.root, config.to_dict()) if is_rank_zero() else None
    loggers = [logger] if logger else []
    try:
        _prune_and_measure(config, run_dir, model, data, downstream, loggers, timings, resume)
    except BaseException:
        tracking.finish(loggers, status="failed")  # close the W&B run: it stays syncable, nothing reuses it
        raise
    tracking.finish(loggers)


def _generate_calibration(
    config: RunConfig, model: torch.nn.Module, data: PruningDataModule, run_dir: RunDirectory
) -> None:
    """data.source generated: the model writes its calibration text (seeded; cached per model, mix, seed)."""
    counts, seqlen, seed = config.data.calibration_counts(), config.data.seqlen, config.data.seed
    windows, languages, record = cached_generate_calibration_mix(
        config.model, model, data.tokenizer, counts, seqlen, seed, config.data.generation, write=is_rank_zero()
    )
    data.set_calibration(windows, languages)
    if is_rank_zero():
        save_record(run_dir.root, record)  # the texts, prompts and why windows were dropped
        write_calibration_files(run_dir.root, data.calibration, data.calibration_record)


def _check_memory(config: RunConfig, model_config: Any) -> None:
    """Print what the run will hold per process; stop if that cannot fit (config.check_memory)."""
    estimate = estimate_memory(config, ModelShape.from_config(model_config), device_kind(config.accelerator))
    if is_rank_zero():
        print(estimate.table(config.world_size))
    if config.check_memory:
        check_fits(estimate, processes_per_machine=config.devices)


def is_rank_zero() -> bool:
    """Rank 0 writes the run and logs; Lightning starts other ranks with their rank in the environment."""
    return rank_zero_only.rank == 0


@contextmanager
def _run_directory(config: RunConfig, model_config: Any, resume: bool) -> Iterator[RunDirectory]:
    """Rank 0 claims the run directory (its lock held for the block) and hands its path to the
    processes Lightning starts later. A signal or an error inside leaves the run resumable; an
    interruption learns which folder to name."""
    if not is_rank_zero():
        path = os.environ.get(RUN_DIR_ENV) or config.out
        if path is None:  # ranks started by torchrun / SLURM all at once: rank 0 cannot hand its path on
            raise ConfigError("processes launched outside Lightning (torchrun, SLURM) need --out: one run directory")
        yield RunDirectory(Path(path))
        return
    out = Path(config.out or default_run_dir(config))
    new_folder = not out.exists()
    discard = False
    try:
        with RunDirectory.claimed(out, overwrite=config.overwrite) as run_dir:
            os.environ[RUN_DIR_ENV] = str(run_dir.root.absolute())  # inherited by the other ranks
            if resume:
                check_resumable(run_dir, config, model_config)
            else:
                shutil.rmtree(progress_dir(run_dir.root), ignore_errors=True)  # stale progress of an old attempt
                run_dir.write_marker(started_with(config, model_config))
            run_dir.mark_running()
            atomic_write_text(run_dir.config, yaml.safe_dump(config.to_dict(), sort_keys=False))
            try:
                yield run_dir
            except Interrupted as stop:
                stop.run_dir = str(run_dir.root)
                raise
            except UserError:
                # A run that stopped before its first layer was saved leaves no RUNNING folder behind.
                discard = new_folder and layers_done(run_dir.root) == 0
                if discard:
                    run_dir.clear()
                raise
    finally:
        if discard:
            with suppress(OSError):
                out.rmdir()  # empty now, unless another run has come in since


def _prune_and_measure(
    config: RunConfig,
    run_dir: RunDirectory,
    model: torch.nn.Module,
    data: PruningDataModule,
    downstream: DownstreamStep,
    loggers: list,
    timings: dict[str, float],
    resume: bool,
) -> None:
    """Dense baseline, layer-by-layer pruning, pruned evaluation, and the run directory's results."""
    trainer_kwargs = _trainer_kwargs(config, loggers)
    evaluate = partial(
        evaluate_perplexity, model, data, trainer_kwargs, config.offload_layers, compile_layers=config.compile_layers
    )

    perplexity: dict[str, dict[str, dict[str, float]]] = {}
    if config.eval.perplexity and config.eval.dense_baseline:
        with _timed(timings, "eval_dense"):
            if config.eval.cache_dense:
                perplexity["dense"] = cached_dense_perplexity(config.model, data.evaluation, evaluate, is_rank_zero())
            else:
                perplexity["dense"] = evaluate()
    if is_rank_zero():
        downstream.evaluate("dense", model, timings)  # before any layer is pruned or restored

    options = CalibrationOptions(
        mode=Mode.of(config.prune.true_sequential, config.prune.single_pass),
        batch_size=config.data.batch_size,
        offload_layers=config.offload_layers,
        activations=config.activations,
        activation_dir=run_dir.root / "activations",
        outlier_threshold=config.prune.owl_threshold,
        compile_layers=config.compile_layers,
    )
    owl = _owl_layer_sparsity(config, model, data, trainer_kwargs, options, timings) if config.prune.owl else None
    weights = window_weights(data.calibration_languages, config.prune.statistics, config.prune.language_weights)
    pruner = LayerPruner(config.prune, owl["sparsity"] if owl else None, data.calibration.ids.numel(), weights)
    restored = load_layer_results(run_dir.root, model) if resume else []
    recorder = CalibrationRecorder()
    callbacks = [recorder, PruningMetricsLogger(), LayerProgressBar()]
    if config.checkpoint and is_rank_zero():
        callbacks.append(LayerCheckpoint(run_dir.root))
    with _timed(timings, "prune"):
        trainer = L.Trainer(**{**trainer_kwargs, "callbacks": callbacks})
        trainer.validate(LayerwiseCalibration(model, data.calibration.ids, options, pruner, restored), verbose=False)
    timings.update({f"prune_{phase}": seconds for phase, seconds in recorder.seconds.items()})
    release_memory()  # the solves' freed temporaries lie between the kept pruned weights on the heap

    if config.eval.perplexity:
        with _timed(timings, "eval_pruned"):
            perplexity["pruned"] = evaluate()
    if not is_rank_zero():
        return  # the other ranks have contributed their share; rank 0 evaluates downstream and saves
    downstream.evaluate("pruned", model, timings)

    with _timed(timings, "save"), _one_line_on_write_error(run_dir, config.checkpoint):
        save_masks(run_dir.root, recorder.masks)
        if config.save_model:
            # loadable with from_pretrained (tokenizer: saved above); shards above save_shard_size
            save_model_streaming(model, run_dir.model, size_in_bytes(config.save_shard_size))

    summary = build_summary(config, recorder.records, perplexity, timings, data.calibration.ids.numel())
    summary["resumed_from_layer"] = recorder.replayed_layers
    summary["world_size"] = trainer.world_size
    if owl:
        summary["owl"] = owl
    downstream.add_to(summary, loggers)  # summary["downstream"] and W&B
    downstream.save(run_dir.root)  # lm-eval's own output: RUN_DIR/lm_eval_results.json
    summary["wandb_url"] = tracking.online_url(loggers)  # None offline: `wandb sync` the folder later
    write_json(run_dir.summary, summary)
    log_results(loggers, summary, run_dir.masks)
    run_dir.mark_complete()
    shutil.rmtree(progress_dir(run_dir.root), ignore_errors=True)  # masks and summary hold the results


def _owl_layer_sparsity(
    config: RunConfig,
    model: torch.nn.Module,
    data: PruningDataModule,
    trainer_kwargs: dict[str, Any],
    options: CalibrationOptions,
    timings: dict[str, float],
) -> dict[str, list[float]]:
    """OWL's pass over the unpruned model: outlier ratio per layer -> sparsity per layer."""
    recorder = CalibrationRecorder()
    with _timed(timings, "owl_scan"):
        trainer = L.Trainer(**{**trainer_kwargs, "callbacks": [recorder, LayerProgressBar()]})
        scan = LayerwiseCalibration(model, data.calibration.ids, replace(options, mode=Mode.SCAN))
        trainer.validate(scan, verbose=False)
    ratios = [recorder.outlier_ratios[layer] for layer in sorted(recorder.outlier_ratios)]
    sparsity = owl_sparsities(ratios, config.prune.sparsity, config.prune.owl_lambda)
    return {"outlier_ratio": ratios, "sparsity": sparsity}


def _trainer_kwargs(config: RunConfig, loggers: list) -> dict[str, Any]:
    return {
        "accelerator": config.accelerator,
        "devices": config.devices,
        "num_nodes": config.num_nodes,
        "strategy": config.strategy,
        "use_distributed_sampler": False,  # the calibration schedule is not data; windows are sharded by us
        "logger": loggers or False,
        "inference_mode": False,  # plain no_grad: tensors made during calibration stay usable after
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "callbacks": [LayerProgressBar()],
    }


@contextmanager
def _one_line_on_write_error(run_dir: RunDirectory, checkpointed: bool) -> Iterator[None]:
    """A full disk (or any failed write) while saving the results: one line saying what is kept."""
    try:
        yield
    except OSError as error:
        then = (
            f"the pruned layers are kept: make room, then lp-prune run --resume {run_dir.root}"
            if checkpointed
            else "nothing was checkpointed (--checkpoint false): make room and run again"
        )
        raise UserError(f"cannot write the results to {run_dir.root}: {error.strerror or error}; {then}") from None


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the block to timings[key]."""
    start = time.perf_counter()
    yield
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - start
