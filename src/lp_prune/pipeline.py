"""One pruning run, end to end: load, measure dense, prune layer by layer, measure pruned, save.

Data flows one way: text -> windows -> layer inputs -> statistics -> masks and weights -> metrics
-> logs and the run directory. What only rank 0 does (files, W&B, lm-eval) goes through the
RunWriter (run_writer); the wall time of each phase through a PhaseTimer.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lp_prune.calibration.checkpoint import load_layer_results
from lp_prune.calibration.loop import PruningLoop
from lp_prune.calibration.loop import trainer_kwargs as loop_trainer_kwargs
from lp_prune.calibration.observers import CalibrationRecorder
from lp_prune.checks import check_finite_weights, check_token_ids, preflight
from lp_prune.config import RunConfig
from lp_prune.data import PruningDataModule
from lp_prune.data.generated import cached_generate_calibration_mix
from lp_prune.evaluation.downstream_step import DownstreamStep
from lp_prune.evaluation.perplexity import cached_dense_perplexity, evaluate_perplexity
from lp_prune.launcher import apply_launcher_environment
from lp_prune.memory import ModelShape, check_fits, device_kind, estimate_memory
from lp_prune.models.loading import load_model, load_tokenizer_and_config, max_positions
from lp_prune.run_writer import RunWriter
from lp_prune.runtime import release_memory
from lp_prune.storage.phase_timer import PhaseTimer
from lp_prune.tracking.summary import RunSummary, build_summary


def run(config: RunConfig, resume: bool = False) -> Path:
    """Run the job described by `config`; return the run directory.

    resume=True continues an unfinished run in `config.out` from its last finished layer.
    Data parallel (devices x num_nodes > 1): Lightning starts the other processes at the first
    Trainer; they run this same function, and only rank 0 writes files or talks to W&B. Under
    `fabric run`, its LT_* choices fill in the config's defaults (lp_prune.launcher).
    """
    config = apply_launcher_environment(config)
    config.validate()
    timer = PhaseTimer()
    writer = RunWriter(config)
    # Everything that can be wrong with the input is found before weights load or files are written.
    with timer.phase("prepare_data"):
        tokenizer, model_config = load_tokenizer_and_config(config.model)
        data = PruningDataModule(config.data, tokenizer, max_positions(model_config))
        data.setup()
        windows = {"calibration": data.calibration, **data.evaluation}
        check_token_ids(windows, model_config, config.data.source)
        preflight(config, model_config)
        downstream = DownstreamStep(config, tokenizer)  # eval.tasks via lm-eval; no-op if empty
        _check_memory(config, model_config, writer)
    del tokenizer  # data and downstream hold it until _run_in lets it go
    with writer.claim(model_config, resume) as run_dir:
        _run_in(writer, config, data, downstream, timer, resume)
    return run_dir.root


def _run_in(
    writer: RunWriter,
    config: RunConfig,
    data: PruningDataModule,
    downstream: DownstreamStep,
    timer: PhaseTimer,
    resume: bool,
) -> None:
    """Everything after the checks, inside the claimed run directory."""
    generated = config.data.source == "generated"  # the model writes its calibration text once loaded
    if not generated:
        writer.write_calibration(data)
    writer.save_tokenizer(data.tokenizer)
    if downstream.plan is None and not generated:  # windows are built; lm-eval is its only later user
        data.release_tokenizer()
        downstream.release_tokenizer()
        release_memory()  # a 262k-vocabulary tokenizer holds ~0.3 GB: return it before the weights load
    L.seed_everything(config.seed, verbose=False)
    with timer.phase("load_model"):
        model = load_model(config.model)
    if generated:
        with timer.phase("generate_calibration"):
            _generate_calibration(config, model, data, writer)
    with writer.tracking():
        _prune_and_measure(config, writer, model, data, downstream, timer, resume)


def _generate_calibration(
    config: RunConfig, model: torch.nn.Module, data: PruningDataModule, writer: RunWriter
) -> None:
    """data.source generated: the model writes its calibration text (seeded; cached per model, mix, seed)."""
    counts, seqlen, seed = config.data.calibration_counts(), config.data.seqlen, config.data.seed
    windows, languages, record = cached_generate_calibration_mix(
        config.model, model, data.tokenizer, counts, seqlen, seed, config.data.generation, write=writer.writes
    )
    data.set_calibration(windows, languages)
    writer.write_calibration(data, generation_record=record)


def _check_memory(config: RunConfig, model_config: Any, writer: RunWriter) -> None:
    """Print what the run will hold per process; stop if that cannot fit (config.check_memory)."""
    estimate = estimate_memory(config, ModelShape.from_config(model_config), device_kind(config.accelerator))
    writer.show(estimate.table(config.world_size))
    if config.check_memory:
        check_fits(estimate, processes_per_machine=config.processes_per_machine)


def _prune_and_measure(
    config: RunConfig,
    writer: RunWriter,
    model: torch.nn.Module,
    data: PruningDataModule,
    downstream: DownstreamStep,
    timer: PhaseTimer,
    resume: bool,
) -> None:
    """Dense baseline, layer-by-layer pruning, pruned evaluation, and the run directory's results."""
    run_dir = writer.run_dir
    trainer_kwargs = loop_trainer_kwargs(config, writer.loggers)
    evaluate = partial(
        evaluate_perplexity, model, data, trainer_kwargs, config.offload_layers, compile_layers=config.compile_layers
    )

    perplexity: dict[str, dict[str, dict[str, float]]] = {}
    if config.eval.perplexity and config.eval.dense_baseline:
        with timer.phase("eval_dense"):
            if config.eval.cache_dense:
                alone = config.world_size == 1  # several processes evaluate together: none may wait for a lock
                perplexity["dense"] = cached_dense_perplexity(
                    config.model, data.evaluation, evaluate, writer.writes, lock=alone
                )
            else:
                perplexity["dense"] = evaluate()
    writer.evaluate_downstream(downstream, "dense", model, timer)  # before any layer is pruned or restored

    loop = PruningLoop.from_config(
        config,
        model,
        data.calibration.ids,
        data.calibration_languages,
        loggers=writer.loggers,
        callbacks=writer.checkpoint_callbacks(),
        activation_dir=run_dir.root / "activations",
        restored=load_layer_results(run_dir.root, model, config.prune.linear_targets) if resume else None,
    )
    recorder = loop.run(timer.phase)
    check_finite_weights(model)  # the pruner checked its Linears; an embedding row no window reads it did not
    for phase, seconds in recorder.seconds.items():
        timer.record(f"prune_{phase}", seconds)
    release_memory()  # the solves' freed temporaries lie between the kept pruned weights on the heap

    if config.eval.perplexity:
        with timer.phase("eval_pruned"):
            perplexity["pruned"] = evaluate()
    # The other ranks have contributed their share: rank 0 evaluates downstream and saves.
    writer.evaluate_downstream(downstream, "pruned", model, timer)
    writer.save_pruned(model, recorder.masks, timer, recorder.grids)
    writer.complete(partial(_summary, config, recorder, perplexity, timer, data, loop), downstream)


def _summary(
    config: RunConfig,
    recorder: CalibrationRecorder,
    perplexity: dict[str, dict[str, dict[str, float]]],
    timer: PhaseTimer,
    data: PruningDataModule,
    loop: PruningLoop,
) -> RunSummary:
    """summary.json's record, once every phase is timed."""
    summary = build_summary(config, recorder.records, perplexity, timer.seconds, data.calibration.ids.numel())
    summary.resumed_from_layer = recorder.replayed_layers
    summary.world_size = loop.trainer.world_size if loop.trainer else 1
    if loop.owl:
        summary.owl = loop.owl
    return summary
