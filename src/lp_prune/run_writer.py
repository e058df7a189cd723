"""Everything a pruning run does besides computing, in one place: only rank 0 does it.

A data-parallel run has one process per device; all of them load, prune and measure their share,
and rank 0 alone claims and writes the run directory, talks to W&B, prints, and runs lm-eval. The
pipeline hands every such side effect to its RunWriter, which does nothing on the other ranks.

The rank is read at every call, not once: Lightning sets it when the first Trainer starts.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lp_prune.calibration.checkpoint import LayerCheckpoint, layers_done, progress_dir
from lp_prune.calibration.observers import layer_metrics
from lp_prune.calibration.results import ModuleRecord
from lp_prune.config import RunConfig, size_in_bytes
from lp_prune.data.generated import save_record
from lp_prune.data.record import write_calibration_files
from lp_prune.errors import ConfigError, Interrupted, UserError
from lp_prune.model_card import write_model_card
from lp_prune.models.shrink import kept_structures, shrink, unpacked
from lp_prune.storage.files import atomic_write_text, copy_file, staged_into, write_json
from lp_prune.tracking.fingerprint import check_resumable, started_with
from lp_prune.tracking.quantized_checkpoint import read_quantization_config, save_quantized_streaming
from lp_prune.tracking.run_dir import COMPRESSED_MODEL_DIR, MODEL_DIR, RunDirectory
from lp_prune.tracking.run_labels import labelled
from lp_prune.tracking.saved_masks import save_masks
from lp_prune.tracking.saved_model import save_model_streaming
from lp_prune.tracking.sparse_checkpoint import SPARSE_BITMASK, read_sparsity_config, save_compressed_streaming
from lp_prune.tracking.sparsity_config import read_dense_sparsity, record_dense_sparsity
from lp_prune.tracking.summary import log_results
from lp_prune.tracking.wandb_logger import (
    finish,
    layer_summary,
    make_wandb_logger,
    online_url,
    run_id,
    update_summary,
)

if TYPE_CHECKING:
    import torch
    from lightning.pytorch.loggers import Logger

    from lp_prune.data import PruningDataModule
    from lp_prune.evaluation.downstream_step import DownstreamStep
    from lp_prune.pruning.grid import QuantGrid
    from lp_prune.pruning.masks import PackedMask
    from lp_prune.storage.phase_timer import PhaseTimer
    from lp_prune.tracking.summary import RunSummary

RUN_DIR_ENV = "LP_PRUNE_RUN_DIR"  # rank 0's run directory, for the processes Lightning starts


def is_rank_zero() -> bool:
    """Rank 0 writes the run and logs; Lightning starts other ranks with their rank in the environment."""
    return rank_zero_only.rank == 0


def default_run_dir(config: RunConfig) -> Path:
    model = Path(config.model.name.rstrip("/")).name or "model"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    calibration = re.sub(r"[^\w+.-]+", "_", config.data.calibration_language)  # mixes: "en:64,sw:64"
    return Path("runs") / f"{model}-{config.prune.method.name}-{calibration}-{stamp}"


class RunWriter:
    """Rank 0's side of one run: the run directory's files, W&B, the console and lm-eval."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.loggers: list[Logger] = []  # W&B, inside `tracking`
        self._run_dir: RunDirectory | None = None
        self._resume = False

    @property
    def writes(self) -> bool:
        """Whether this process is the one that writes (for caches that only rank 0 fills)."""
        return is_rank_zero()

    @property
    def run_dir(self) -> RunDirectory:
        if self._run_dir is None:
            raise RuntimeError("the run directory is known once `claim` has started")
        return self._run_dir

    def show(self, text: str) -> None:
        """Print `text` once, on rank 0."""
        if self.writes:
            print(text)

    @contextmanager
    def claim(self, model_config: Any, resume: bool) -> Iterator[RunDirectory]:
        """Rank 0 claims the run directory (its lock held for the block) and hands its path to the
        processes Lightning starts later. A signal or an error inside leaves the run resumable; an
        interruption learns which folder to name."""
        config = self.config
        if not self.writes:
            path = os.environ.get(RUN_DIR_ENV) or config.out
            if path is None:  # ranks started by torchrun / SLURM all at once: rank 0 cannot hand its path on
                raise ConfigError(
                    "processes launched outside Lightning (torchrun, SLURM) need --out: one run directory"
                )
            self._run_dir = RunDirectory(Path(path))
            yield self._run_dir
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
                self._resume = resume
                atomic_write_text(run_dir.config, yaml.safe_dump(config.to_dict(), sort_keys=False))
                self._run_dir = run_dir
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

    def write_calibration(self, data: PruningDataModule, generation_record: Mapping[str, Any] | None = None) -> None:
        """Which text calibrates, and its token ids (rerunnable as tokens); generated text's record first."""
        if not self.writes:
            return
        if generation_record is not None:
            save_record(self.run_dir.root, dict(generation_record))  # the texts, prompts and why windows were dropped
        write_calibration_files(self.run_dir.root, data.calibration, data.calibration_record)

    def save_tokenizer(self, tokenizer: Any) -> None:
        """With --save_model, the tokenizer beside the weights: now, so that it need not stay in memory."""
        if self.config.save_model and self.writes:
            with staged_into(self.run_dir.writable_folder(MODEL_DIR)) as staging:  # never through a planted link
                tokenizer.save_pretrained(staging)

    @contextmanager
    def tracking(self) -> Iterator[list[Logger]]:
        """The W&B run for the block (`self.loggers`); a failure inside closes it as failed, still syncable.

        Its id goes into the run directory's marker; a resumed run continues the W&B run it names."""
        logger = None
        if self.writes:
            previous = self.run_dir.wandb_record().get("id") if self._resume else None
            wandb = labelled(self.config)  # name, group and tags from the recipe where not given
            logger = make_wandb_logger(wandb, self.run_dir.root, self.config.to_dict(), run_id=previous)
        self.loggers = [logger] if logger else []
        current = run_id(self.loggers)
        if current is not None:
            self.run_dir.record_wandb(id=current)
        try:
            yield self.loggers
        except BaseException:
            finish(self.loggers, status="failed")  # nothing reuses the run
            raise
        finish(self.loggers)

    def evaluate_downstream(self, downstream: DownstreamStep, stage: str, model: Any, timer: PhaseTimer) -> None:
        """lm-eval on the model as it is now (`stage`: dense or pruned), on rank 0 alone."""
        if self.writes:
            downstream.evaluate(stage, model, timer)

    def checkpoint_callbacks(self) -> list[LayerCheckpoint]:
        """With --checkpoint, the callback that saves every finished layer into progress/."""
        return [LayerCheckpoint(self.run_dir.root)] if self.config.checkpoint and self.writes else []

    def save_pruned(
        self,
        model: torch.nn.Module,
        masks: Mapping[str, torch.Tensor | PackedMask],
        timer: PhaseTimer,
        grids: Mapping[str, QuantGrid] | None = None,
    ) -> None:
        """The masks, and with --save_model the pruned model (loadable with from_pretrained; for a method
        that zeroes weights its sparsity_config.json records the sparsity, format dense); with save_compressed as
        well the compressed checkpoint beside it: pack-quantized for a method that quantizes (from its
        `grids`), and with save_compressed sparse-bitmask the bitmask layout for one that only prunes."""
        if not self.writes:
            return
        with timer.phase("save"), self._one_line_on_write_error():
            save_masks(self.run_dir.root, masks)
            if self.config.save_model:  # tokenizer: save_tokenizer; shards above save_shard_size
                method = self.config.prune.method.capabilities()
                shard_size = size_in_bytes(self.config.save_shard_size)
                cut = method.export_format == "shrunk"  # removed heads and channels cut out: a smaller, dense model
                if cut:
                    shrink(model, kept_structures(model, unpacked(masks)))
                save_model_streaming(model, self.run_dir.writable_folder(MODEL_DIR), shard_size)
                if method.zeroes and not cut:
                    record_dense_sparsity(model, self.run_dir.model, masks, self.config.prune.pattern)
                if not self.config.save_compressed or cut:
                    return
                folder = self.run_dir.writable_folder(COMPRESSED_MODEL_DIR, make=False)  # made by what saves there
                if method.export_format == "pack-quantized":  # joint pruning: the zeros are codes too
                    if save_quantized_streaming(model, folder, grids or {}, masks, shard_size) is not None:
                        copy_tokenizer(self.run_dir.model, folder)
                elif method.export_format == "sparse-bitmask" and self.config.save_compressed == SPARSE_BITMASK:
                    save_compressed_streaming(model, folder, masks, self.config.prune.pattern, shard_size)
                    copy_tokenizer(self.run_dir.model, folder)

    def complete(self, summary_of: Callable[[], RunSummary], downstream: DownstreamStep) -> None:
        """summary.json (built by `summary_of`, on rank 0 only), lm-eval's output, W&B's results; then COMPLETE."""
        if not self.writes:
            return
        run_dir = self.run_dir
        summary = summary_of()
        downstream.add_to(summary, self.loggers)  # summary.downstream and W&B
        downstream.save(run_dir.root)  # lm-eval's own output: RUN_DIR/lm_eval_results.json
        summary.wandb_url = online_url(self.loggers)  # None offline: `wandb sync` the folder later
        write_json(run_dir.summary, summary.to_json())
        self._write_model_cards(summary)
        log_results(self.loggers, summary, run_dir.masks)
        update_summary(self.loggers, layer_summary(layer_rows(summary.modules)))
        run_dir.mark_complete()
        shutil.rmtree(progress_dir(run_dir.root), ignore_errors=True)  # masks and summary hold the results

    def _write_model_cards(self, summary: RunSummary) -> None:
        """README.md in the saved model folders, now that the summary's numbers are known."""
        if self.run_dir.model.is_dir():
            write_model_card(self.run_dir.model, summary, self.config, dense=read_dense_sparsity(self.run_dir.model))
        compressed = self.run_dir.compressed_model
        if compressed.is_dir():
            stored = read_quantization_config(compressed) or read_sparsity_config(compressed)
            write_model_card(compressed, summary, self.config, stored)

    @contextmanager
    def _one_line_on_write_error(self) -> Iterator[None]:
        """A full disk (or any failed write) while saving the results: one line saying what is kept."""
        try:
            yield
        except OSError as error:
            root = self.run_dir.root
            then = (
                f"the pruned layers are kept: make room, then lp-prune run --resume {root}"
                if self.config.checkpoint
                else "nothing was checkpointed (--checkpoint false): make room and run again"
            )
            raise UserError(f"cannot write the results to {root}: {error.strerror or error}; {then}") from None


def copy_tokenizer(source: Path, target: Path) -> None:
    """The tokenizer files save_tokenizer put beside the dense weights, into another model folder
    (links are neither read nor written through)."""
    skip = {"config.json", "generation_config.json", "README.md"}
    for path in source.iterdir():
        weights = path.name.endswith((".safetensors", ".safetensors.index.json"))
        if path.is_file() and not path.is_symlink() and path.name not in skip and not weights:
            copy_file(path, target / path.name)


def layer_rows(modules: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The per-layer W&B history rows of a whole run, rebuilt from its summary's module records (a
    resumed run logged only the layers after the resume point)."""
    by_layer: dict[int, list[ModuleRecord]] = {}
    for module in modules:
        by_layer.setdefault(module["layer"], []).append(ModuleRecord(**module))
    return [layer_metrics(layer, records) for layer, records in sorted(by_layer.items())]
