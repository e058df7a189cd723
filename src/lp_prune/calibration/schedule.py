"""The layer schedule: which steps the calibration loop takes, one validation "batch" each.

    two-pass:         capture, then per layer  collect -> propagate
    true-sequential:  capture, then per layer  collect(group 0) ... collect(group G-1) -> propagate
    single-pass:      capture, then per layer  single (each group pruned right before it runs)
    scan:             capture, then per layer  scan (statistics of the unpruned layer; OWL)

A resumed run first replays the layers it finished before (their saved results go back into the
model and their outputs are recomputed), then continues with the mode's steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Mode(Enum):
    TWO_PASS = "two-pass"  # statistics of all Linears in one pass, then a pass through the pruned layer
    TRUE_SEQUENTIAL = "true-sequential"  # groups [q,k,v] -> [o] -> [gate,up] -> [down], each on pruned inputs
    SINGLE_PASS = "single-pass"  # the true-sequential result with one forward per layer
    SCAN = "scan"  # no pruning: statistics of the unpruned model (OWL's outlier count)

    @property
    def in_order(self) -> bool:
        """Linears are grouped in the true-sequential order."""
        return self in (Mode.TRUE_SEQUENTIAL, Mode.SINGLE_PASS)

    @classmethod
    def of(cls, true_sequential: bool, single_pass: bool) -> Mode:
        if single_pass:
            return cls.SINGLE_PASS
        return cls.TRUE_SEQUENTIAL if true_sequential else cls.TWO_PASS


class StepKind(Enum):
    CAPTURE = "capturing layer inputs"  # layer 0's inputs and every layer's call arguments
    REPLAY = "restoring"  # a layer finished before a resume: its saved result back in, outputs recomputed
    COLLECT = "collecting statistics"  # a group's input statistics, then the group is pruned
    PROPAGATE = "propagating"  # the pruned layer runs: its outputs are the next layer's inputs
    SINGLE = "pruning in one pass"  # each group pruned by a hook right before it runs; outputs move on
    SCAN = "counting outliers"  # statistics while the unpruned layer's outputs move on


LAYER_ENDING = {StepKind.REPLAY, StepKind.PROPAGATE, StepKind.SINGLE, StepKind.SCAN}


@dataclass  # not frozen: Lightning rebuilds dataclass batches when it moves them to the device
class Step:
    kind: StepKind
    layer: int
    group: int = 0  # index into the layer's groups (true-sequential collect steps), 0 otherwise

    @property
    def ends_layer(self) -> bool:
        """The layer is finished (pruned, outputs propagated) when this step ends."""
        return self.kind in LAYER_ENDING


def build_schedule(mode: Mode, groups_per_layer: list[int], replayed_layers: int = 0) -> list[Step]:
    """All steps of a calibration: `groups_per_layer[i]` groups in layer i; the first
    `replayed_layers` layers come back from a checkpoint."""
    steps = [Step(StepKind.CAPTURE, 0)]
    steps += [Step(StepKind.REPLAY, layer) for layer in range(replayed_layers)]
    for layer in range(replayed_layers, len(groups_per_layer)):
        if mode is Mode.SCAN:
            steps.append(Step(StepKind.SCAN, layer))
        elif mode is Mode.SINGLE_PASS:
            steps.append(Step(StepKind.SINGLE, layer))
        else:
            steps += [Step(StepKind.COLLECT, layer, group) for group in range(groups_per_layer[layer])]
            steps.append(Step(StepKind.PROPAGATE, layer))
    return steps
