"""SparseGPT's joint pruning + quantization against the textbook column-by-column update, and the
cases where the maths reduces it to pruning then quantizing, or to GPTQ."""

import json

import pytest
import torch

import lp_prune
from lp_prune.cli import main
from lp_prune.models.loading import load_run_model
from lp_prune.pruning.gptq import gptq_quantize
from lp_prune.pruning.quantize import grid_params, quantize, round_to_nearest
from lp_prune.pruning.sparsegpt import sparsegpt_prune
from lp_prune.pruning.sparsegpt_gptq import prune_and_quantize
from test_gptq import SMALL, distinct_per_group, random_problem


def joint_reference(weight, hessian, sparsity, bits, group_size=None, symmetric=False, n_m=None, blocksize=128):
    """The textbook update in float64: the inverse of the not-yet-visited columns' Hessian inverted afresh
    at every column. Masks: unstructured, the lowest w^2 / [H_rest^-1]_00 of each block of columns at
    its start; N:M, the lowest N of each M columns when the group starts. Kept weights are rounded onto
    the grid (per row from the dense row, or per group from its updated kept weights), pruned ones set to 0."""
    W = weight.double().clone()
    H = hessian.double().clone()
    H += 0.01 * torch.diagonal(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    columns = W.shape[1]
    inverses = [torch.linalg.inv(H[j:, j:]) for j in range(columns)]  # each column's own (H_rest)^-1
    d2 = torch.tensor([float(inverse[0, 0]) for inverse in inverses], dtype=W.dtype)
    pruned = torch.zeros_like(W, dtype=torch.bool)
    if group_size is None:
        scale, zero = grid_params(W, bits, symmetric)
    for j in range(columns):
        if n_m is None and j % blocksize == 0:
            block = slice(j, min(j + blocksize, columns))
            scores = (W[:, block].square() / d2[block]).flatten()
            count = round(scores.numel() * sparsity)
            chosen = torch.zeros_like(scores, dtype=torch.bool)
            chosen[torch.argsort(scores)[:count]] = True
            pruned[:, block] = chosen.view(W.shape[0], -1)
        if n_m is not None and j % n_m[1] == 0:
            group = slice(j, j + n_m[1])
            lowest = torch.argsort(W[:, group].square() / d2[group], dim=1)[:, : n_m[0]]
            pruned[:, group] = torch.zeros_like(pruned[:, group]).scatter(1, lowest, True)
        if group_size is not None and j % group_size == 0:
            group = slice(j, j + group_size)
            scale, zero = grid_params(W[:, group] * ~pruned[:, group], bits, symmetric)
        kept = W[:, j] * ~pruned[:, j]
        q = quantize(kept.float(), scale.squeeze(-1).float(), zero.squeeze(-1).float(), bits).double()
        err = (W[:, j] - q) / inverses[j][0, 0]
        W[:, j:] -= err[:, None] * inverses[j][0][None, :]
        W[:, j] = q
    return W, pruned


CASES = [
    # sparsity, bits, group_size, symmetric, n_m, blocksize
    (0.5, 4, None, False, None, 128),
    (0.5, 3, None, True, None, 8),
    (0.5, 4, 4, False, None, 8),
    (0.6, 2, 8, True, None, 4),  # groups across block boundaries
    (0.5, 4, None, False, (2, 4), 8),
    (0.5, 3, 8, False, (2, 4), 4),
]


@pytest.mark.parametrize(("sparsity", "bits", "group_size", "symmetric", "n_m", "blocksize"), CASES)
def test_joint_equals_the_column_by_column_update(sparsity, bits, group_size, symmetric, n_m, blocksize):
    weight, hessian, _ = random_problem(8, 16, seed=4)
    expected, expected_mask = joint_reference(weight, hessian, sparsity, bits, group_size, symmetric, n_m, blocksize)
    result = prune_and_quantize(weight, hessian, sparsity, bits, group_size, symmetric, n_m, blocksize)
    assert torch.equal(result.mask, expected_mask)
    difference = (result.weight.double() - expected).abs().max().item()
    print(f"joint vs textbook {sparsity=} {bits=} {group_size=} {symmetric=} {n_m=} {blocksize=}: {difference:.2e}")
    assert difference < 1e-5


def test_pruned_weights_are_exact_zeros_and_kept_ones_lie_on_the_grid():
    weight, hessian, _ = random_problem(8, 32, seed=5)
    result = prune_and_quantize(weight, hessian, 0.5, 2, group_size=8, blocksize=16)
    assert torch.equal(result.weight == 0, result.mask | (result.weight == 0))
    assert torch.equal(result.weight[result.mask], torch.zeros(int(result.mask.sum())))
    assert int(result.mask.sum()) == weight.numel() // 2
    assert distinct_per_group(result.weight, 8) <= 4  # 2 bits: four levels, 0 among them
    two_four = prune_and_quantize(weight, hessian, 0.5, 4, n_m=(2, 4), blocksize=16)
    assert torch.equal(two_four.mask.reshape(8, 8, 4).sum(-1), torch.full((8, 8), 2))


def test_with_independent_inputs_joint_is_pruning_then_rounding():
    """A diagonal Hessian leaves the columns uncoupled: no update reaches another column, so joint =
    SparseGPT's mask, then each group rounded on the grid of its kept weights (group size | block size)."""
    weight, _, _ = random_problem(8, 32, seed=6)
    hessian = torch.diag(torch.rand(32) * 3 + 0.2)
    pruned = sparsegpt_prune(weight, hessian, 0.5, blocksize=16)
    assert torch.equal(pruned.weight[~pruned.mask], weight[~pruned.mask])  # nothing was updated
    for group_size in (8, 16):
        joint = prune_and_quantize(weight, hessian, 0.5, 3, group_size=group_size, blocksize=16)
        assert torch.equal(joint.mask, pruned.mask)
        expected = round_to_nearest(pruned.weight, 3, group_size)
        assert (joint.weight - expected).abs().max() < 1e-6, group_size


def test_at_zero_sparsity_joint_is_gptq():
    weight, hessian, _ = random_problem(8, 16, seed=7)
    for group_size in (None, 4):
        joint = prune_and_quantize(weight, hessian, 0.0, 4, group_size, blocksize=6)
        gptq = gptq_quantize(weight, hessian, 4, group_size, blocksize=6)
        assert not joint.mask.any()
        assert (joint.weight - gptq.weight).abs().max() < 1e-6 and joint.loss == pytest.approx(gptq.loss, rel=1e-5)


def test_joint_error_is_lower_than_pruning_then_rounding():
    for seed in range(3):
        weight, hessian, inputs = random_problem(16, 32, seed=seed)
        joint = prune_and_quantize(weight, hessian, 0.5, 3, group_size=8, blocksize=16).weight
        apart = round_to_nearest(sparsegpt_prune(weight, hessian, 0.5, blocksize=16).weight, 3, 8)
        assert torch.linalg.norm((weight - joint) @ inputs.T) < torch.linalg.norm((weight - apart) @ inputs.T), seed


def test_a_joint_run_completes_sparse_and_on_the_grid(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), "--prune.method", "sparsegpt_gptq"]
    argv += ["--prune.bits", "4", "--prune.group_size", "16", "--save_model", "true"]
    assert main([*argv, *SMALL]) == 0
    summary = json.loads((out / "summary.json").read_text())
    masks = lp_prune.load_masks(out)
    pruned = sum(int(mask.sum()) for mask in masks.values()) / sum(mask.numel() for mask in masks.values())
    assert summary["method"] == "sparsegpt_gptq" and pruned == pytest.approx(0.5, abs=1e-3)
    assert summary["sparsity"] >= pruned  # some kept weights round to 0 on the 4-bit grid
    model, _ = load_run_model(out)
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        weight = modules[name].weight.detach()
        assert torch.equal(weight[mask], torch.zeros(int(mask.sum()))), name
        assert distinct_per_group(weight, 16) <= 16, name


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prune.bits", "17"], "prune.bits must be an integer from 2 to 8"),
        (["--prune.group_size", "24"], "prune.group_size 24 must divide every Linear input size"),
        (["--prune.pattern", "2:4", "--prune.blocksize", "6"], "must be a multiple of M=4"),
    ],
)
def test_bad_joint_settings_are_one_line(tiny_model_dir, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), "--prune.method", "sparsegpt_gptq"]
    assert main([*argv, *flags, *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err


def test_quantization_grids_are_settings_of_their_own_and_mask_claims_do_not_apply(tiny_model_dir, tmp_path):
    root = tmp_path / "runs"
    for bits, lang in ((4, "en"), (4, "sw"), (3, "en")):
        argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(root / f"{bits}-{lang}")]
        argv += ["--prune.method", "gptq", "--prune.bits", str(bits), "--data.calibration_language", lang]
        assert main([*argv, *SMALL]) == 0
    joint = ["run", "--model.name", str(tiny_model_dir), "--out", str(root / "joint-en")]
    assert main([*joint, "--prune.method", "sparsegpt_gptq", *SMALL]) == 0
    out = tmp_path / "report"
    assert main(["compare", str(root), "--out", str(out), "--no_wandb"]) == 0
    report = json.loads((out / "tables.json").read_text())
    settings = set(report["perplexity"])
    four, three = "gptq n=4x32 4-bit g-row", "gptq n=4x32 3-bit g-row"
    assert {four, three, "sparsegpt_gptq unstructured s=0.5 n=4x32 4-bit g-row"} == settings
    assert set(report["perplexity"][four]) == {"dense", "en", "sw"}  # the 3-bit run is not a repeat of en
    verdicts = {setting: {f["claim"]: f["verdict"] for f in found} for setting, found in report["findings"].items()}
    assert verdicts[four]["C4"] == verdicts[three]["C4"] == "does not apply"
    assert verdicts["sparsegpt_gptq unstructured s=0.5 n=4x32 4-bit g-row"]["C4"] != "does not apply"
