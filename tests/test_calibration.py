"""The calibration loop: steps return their work, observers only read it, resume replays saved layers."""

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import Logger
from safetensors.torch import load_file

from lp_prune.calibration.checkpoint import LayerCheckpoint, load_layer_results, progress_dir
from lp_prune.calibration.module import CalibrationOptions, LayerwiseCalibration
from lp_prune.calibration.observers import CalibrationRecorder, LayerProgressBar, PruningMetricsLogger
from lp_prune.calibration.pruner import LayerPruner
from lp_prune.calibration.results import StepOutput
from lp_prune.calibration.schedule import Mode, Step, StepKind, build_schedule
from lp_prune.config import PruneConfig
from lp_prune.errors import UserError
from lp_prune.models.layers import decoder_layers, prunable_linears
from tiny_models import tiny_model


class MetricsCapture(Logger):
    """A Lightning logger that keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []

    name = "capture"
    version = 0

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append(dict(metrics))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


class OutputCapture(L.Callback):
    def __init__(self) -> None:
        self.outputs: list[StepOutput] = []

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self.outputs.append(outputs)


def calibrate(model, callbacks, method="sparsegpt", mode=Mode.TWO_PASS, restored=None, loggers=None, **prune):
    ids = torch.randint(3, 96, (4, 16), generator=torch.Generator().manual_seed(0))
    config = PruneConfig(method=method, **prune)
    pruner = LayerPruner(config, calibration_tokens=ids.numel())
    options = CalibrationOptions(mode=mode, batch_size=2, targets=config.linear_targets)
    module = LayerwiseCalibration(model, ids, options, pruner, restored)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=False,
        enable_model_summary=False,
        inference_mode=False,
    )
    trainer.validate(module, verbose=False)


def observed_run(tmp_path, reverse: bool):
    tmp_path.mkdir()
    model = tiny_model("llama")
    recorder, logger, checkpoint = CalibrationRecorder(), MetricsCapture(), LayerCheckpoint(tmp_path)
    callbacks = [recorder, PruningMetricsLogger(), checkpoint, LayerProgressBar()]
    calibrate(model, callbacks[::-1] if reverse else callbacks, loggers=[logger])
    files = {path.name: load_file(path) for path in sorted(progress_dir(tmp_path).glob("*.safetensors"))}
    return model, recorder, logger.rows, files


def test_observers_in_reverse_order_give_identical_results(tmp_path):
    model_a, rec_a, rows_a, files_a = observed_run(tmp_path / "a", reverse=False)
    model_b, rec_b, rows_b, files_b = observed_run(tmp_path / "b", reverse=True)
    assert rec_a.records and rec_a.records == rec_b.records
    assert rec_a.masks.keys() == rec_b.masks.keys()
    assert all(torch.equal(rec_a.masks[n].bits, rec_b.masks[n].bits) for n in rec_a.masks)
    assert rec_a.replayed_layers == rec_b.replayed_layers == 0
    assert set(rec_a.seconds) == set(rec_b.seconds) == {"capture", "collect", "statistics", "solve", "propagate"}
    assert [r["layer"] for r in rows_a] == [0, 1, 2] and rows_a == rows_b
    assert files_a.keys() == files_b.keys() == {f"layer_{i:03d}.safetensors" for i in range(3)}
    for name in files_a:
        assert all(torch.equal(files_a[name][k], files_b[name][k]) for k in files_a[name])
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("method", ["sparsegpt", "wanda", "magnitude"])
def test_a_finished_layer_returns_every_linear_as_installed(method):
    model = tiny_model("llama")
    capture = OutputCapture()
    calibrate(model, [capture], method=method)
    finished = [out for out in capture.outputs if out.layer is not None]
    assert [out.step for out in finished] == [Step(StepKind.PROPAGATE, layer) for layer in range(3)]
    for out, layer in zip(finished, decoder_layers(model), strict=True):
        linears = prunable_linears(layer)
        assert len(out.layer.linears) == len(linears)
        for result, (name, linear) in zip(out.layer.linears, linears.items(), strict=True):
            assert result.name.endswith(name) and result.record.module == result.name
            assert result.weight is linear.weight.data or torch.equal(result.weight, linear.weight)
            mask = result.mask.unpack()
            assert mask.shape == linear.weight.shape and (linear.weight[mask] == 0).all()
            assert result.record.sparsity == pytest.approx(0.5, abs=0.02)
    steps_without_result = [out for out in capture.outputs if out.layer is None]
    assert {out.step.kind for out in steps_without_result} == {StepKind.CAPTURE, StepKind.COLLECT}


def test_schedules_of_every_mode():
    assert build_schedule(Mode.TWO_PASS, [1, 1]) == [
        Step(StepKind.CAPTURE, 0),
        Step(StepKind.COLLECT, 0),
        Step(StepKind.PROPAGATE, 0),
        Step(StepKind.COLLECT, 1),
        Step(StepKind.PROPAGATE, 1),
    ]
    true_sequential = build_schedule(Mode.TRUE_SEQUENTIAL, [4, 4], replayed_layers=1)
    assert [s.kind for s in true_sequential] == [StepKind.CAPTURE, StepKind.REPLAY] + [StepKind.COLLECT] * 4 + [
        StepKind.PROPAGATE
    ]
    assert [s.group for s in true_sequential[2:6]] == [0, 1, 2, 3]
    assert [s.kind for s in build_schedule(Mode.SINGLE_PASS, [4, 4])] == [StepKind.CAPTURE] + [StepKind.SINGLE] * 2
    assert [s.kind for s in build_schedule(Mode.SCAN, [1, 1, 1])] == [StepKind.CAPTURE] + [StepKind.SCAN] * 3
    assert [s.ends_layer for s in build_schedule(Mode.TWO_PASS, [1])] == [False, False, True]


def test_resume_replays_saved_layers_to_the_uninterrupted_result(tmp_path):
    """Layers 0-1 of a finished run, replayed into a fresh model, lead to the same layer 2 and records."""
    full_model, recorder = tiny_model("llama"), CalibrationRecorder()
    calibrate(full_model, [recorder, LayerCheckpoint(tmp_path)], method="sparsegpt")
    (progress_dir(tmp_path) / "state.json").write_text('{"layers_done": 2}')

    fresh = tiny_model("llama")
    restored = load_layer_results(tmp_path, fresh)
    assert [r.layer for r in restored] == [0, 1] and all(r.replayed for r in restored)
    resumed, capture = CalibrationRecorder(), OutputCapture()
    calibrate(fresh, [resumed, capture], method="sparsegpt", restored=restored)
    kinds = [out.step.kind for out in capture.outputs]
    assert kinds == [StepKind.CAPTURE, StepKind.REPLAY, StepKind.REPLAY, StepKind.COLLECT, StepKind.PROPAGATE]
    assert resumed.replayed_layers == 2
    assert resumed.records == recorder.records
    assert all(torch.equal(resumed.masks[n].bits, recorder.masks[n].bits) for n in recorder.masks)
    for (name, a), b in zip(full_model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_with_a_layer_left_whole_replays_to_the_uninterrupted_result(tmp_path):
    """prune.ignore leaves layer 0 whole and layer 1's MLP: layer 0 is still saved (empty) and counted,
    so a resume after two layers replays both and ends as the uninterrupted run."""
    ignore = ["re:model\\.layers\\.0\\.", "re:model\\.layers\\.1\\.mlp"]
    full_model, recorder, capture = tiny_model("llama"), CalibrationRecorder(), OutputCapture()
    calibrate(full_model, [recorder, LayerCheckpoint(tmp_path), capture], ignore=ignore)
    assert [len(out.layer.linears) for out in capture.outputs if out.layer is not None] == [0, 4, 7]
    assert len(load_file(progress_dir(tmp_path) / "layer_000.safetensors")) == 0
    (progress_dir(tmp_path) / "state.json").write_text('{"layers_done": 2}')

    fresh = tiny_model("llama")
    restored = load_layer_results(tmp_path, fresh, PruneConfig(ignore=ignore).linear_targets)
    assert [len(r.linears) for r in restored] == [0, 4]
    resumed = CalibrationRecorder()
    calibrate(fresh, [resumed], restored=restored, ignore=ignore)
    assert resumed.records == recorder.records and resumed.masks.keys() == recorder.masks.keys()
    for (name, a), b in zip(full_model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(UserError, match="does not match the model's modules"):
        load_layer_results(tmp_path, fresh)  # every Linear: not the run's selection


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_the_heap_is_trimmed_after_every_statistics_pass_and_every_layer(monkeypatch, method):
    """Freed temporaries go back to the OS (runtime.trim_heap) once a statistics pass has ended, before
    the solve, and once a layer's outputs are computed, before the next layer runs."""
    import lp_prune.calibration.module as module

    model = tiny_model("llama")
    events: list[tuple] = []
    for index, layer in enumerate(decoder_layers(model)):
        layer.register_forward_hook(lambda *_, index=index: events.append(("forward", index)))
    monkeypatch.setattr(module, "trim_heap", lambda: events.append(("trim",)))
    remove = module.InputCollector.remove
    monkeypatch.setattr(module.InputCollector, "remove", lambda self: (remove(self), events.append(("statistics",))))
    calibrate(model, [], method=method)
    passes = [i for i, event in enumerate(events) if event == ("statistics",)]
    assert len(passes) >= 3 and all(events[i + 1] == ("trim",) for i in passes)
    for layer in range(3):
        last_forward = max(i for i, event in enumerate(events) if event == ("forward", layer))
        assert events[last_forward + 1] == ("trim",)


def test_magnitude_without_metrics_runs_no_statistics_pass():
    """Magnitude pruning sees no data: without metrics its steps never run the layer for statistics."""
    model = tiny_model("llama")
    calls = []
    for linear in prunable_linears(decoder_layers(model)[0]).values():
        linear.register_forward_pre_hook(lambda *_: calls.append(1))
    capture = OutputCapture()
    calibrate(model, [capture], method="magnitude", local_error="off")
    collect = [out for out in capture.outputs if out.step.kind is StepKind.COLLECT]
    assert collect and all("collect" not in out.seconds for out in collect)
    assert len(calls) == 7 * 2  # 7 Linears x 2 batches, all in the propagate pass


def test_solves_are_shared_out_by_cost():
    """Largest first to the least-loaded process: every job once, loads as even as the costs allow."""
    from lp_prune.calibration.distributed import assign_owners

    assert assign_owners([5.0, 1.0, 1.0, 3.0], 1) == [0, 0, 0, 0]
    owners = assign_owners([5.0, 1.0, 1.0, 3.0], 2)
    loads = [sum(c for c, o in zip([5.0, 1.0, 1.0, 3.0], owners, strict=True) if o == p) for p in range(2)]
    assert sorted(loads) == [5.0, 5.0]
    # Gemma-3-270M's four solve groups (q/k/v, o, gate/up, down) on 2 processes: down alone on one.
    from lp_prune.calibration.pruner import SolveUnit

    def unit(rows: int, width: int) -> SolveUnit:
        return SolveUnit({"x": torch.nn.Linear(width, rows, bias=False, device="meta")}, None)

    costs = [u.cost for u in (unit(1536, 640), unit(640, 1024), unit(4096, 640), unit(640, 2048))]
    owners = assign_owners(costs, 2)
    assert owners[3] != owners[0] == owners[1] == owners[2]
