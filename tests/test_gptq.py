"""Quantization behind the method seam: the grid, round-to-nearest, GPTQ against the textbook
column-by-column update, and a quantized run end to end."""

import json
import re

import pytest
import torch

import lp_prune
from lp_prune.cli import main
from lp_prune.models.loading import load_run_model
from lp_prune.pruning.gptq import gptq_quantize
from lp_prune.pruning.quantize import grid_params, quantize, round_to_nearest

SMALL = ["--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2", "--data.eval_windows", "2"]
SMALL += ["--data.eval_seqlen", "32", "--data.eval_languages", "[en, sw]", "--wandb.mode", "disabled"]


def random_problem(rows=8, columns=16, seed=0):
    """A weight and a random SPD Hessian 2/n X^T X of correlated inputs."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(rows, columns, generator=generator)
    mixing = torch.randn(columns, columns, generator=generator) / columns**0.5 + torch.eye(columns)
    inputs = torch.randn(4 * columns, columns, generator=generator) @ mixing
    scales = torch.rand(columns, generator=generator) * 3 + 0.2  # unequal input energies: act_order matters
    inputs = inputs * scales
    return weight, 2 / inputs.shape[0] * inputs.T @ inputs, inputs


def distinct_per_group(weight, group_size):
    rows, columns = weight.shape
    groups = weight.reshape(rows, columns // group_size, group_size)
    return max(len(torch.unique(group)) for row in groups for group in row)


def direct_grid(w, bits, symmetric):
    """The grid formula written out for one row: (scale, zero)."""
    maxq = 2**bits - 1
    if symmetric:
        m = float(w.abs().max()) or 1.0
        return 2 * m / maxq, 2 ** (bits - 1)
    low, high = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    if low == high == 0.0:
        low, high = -1.0, 1.0
    scale = (high - low) / maxq
    return scale, round(-low / scale)


def obq_reference(weight, hessian, bits, group_size=None, symmetric=False, order=None, percdamp=0.01):
    """The textbook update in float64: for each column in `order`, quantize it, and spread its error
    over the not-yet-quantized columns with the inverse of their Hessian, inverted afresh each step."""
    W = weight.double().clone()
    H = hessian.double().clone()
    H += percdamp * torch.diagonal(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    order = list(range(W.shape[1])) if order is None else [int(j) for j in order]
    scale = zero = None
    if group_size is None:
        scale, zero = grid_params(W, bits, symmetric)
    loss = 0.0
    for step, j in enumerate(order):
        if group_size is not None and step % group_size == 0:
            scale, zero = grid_params(W[:, order[step : step + group_size]], bits, symmetric)
        rest = order[step:]
        inverse = torch.linalg.inv(H[rest][:, rest])
        q = quantize(W[:, j].float(), scale.squeeze(-1).float(), zero.squeeze(-1).float(), bits).double()
        err = (W[:, j] - q) / inverse[0, 0]
        loss += float(((W[:, j] - q) ** 2 / inverse[0, 0]).sum() / 2)
        W[:, rest] -= err[:, None] * inverse[0][None, :]
        W[:, j] = q
    return W, loss


def test_rtn_equals_direct_rounding_on_each_rows_grid():
    weight = torch.randn(6, 12)
    weight[2] = 0.0  # an all-zero row: its scale must not be 0
    weight[4] = weight[4].abs()  # all positive: the asymmetric range still holds 0
    for bits in (2, 3, 4, 8):
        for symmetric in (False, True):
            result = round_to_nearest(weight, bits, symmetric=symmetric)
            for row, w in enumerate(weight):
                scale, zero = direct_grid(w, bits, symmetric)
                q = torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1)
                assert torch.allclose(result[row], scale * (q - zero), atol=1e-6), (bits, symmetric, row)
                assert len(torch.unique(result[row])) <= 2**bits
            assert torch.equal(result[2], torch.zeros(12))


def test_grouped_rtn_uses_one_grid_per_group():
    weight = torch.randn(4, 32)
    result = round_to_nearest(weight, 3, group_size=8)
    assert distinct_per_group(result, 8) <= 8
    for g in range(4):
        block = slice(8 * g, 8 * g + 8)
        assert torch.equal(result[:, block], round_to_nearest(weight[:, block], 3))
    assert not torch.equal(result, round_to_nearest(weight, 3))  # per channel differs


def test_gptq_values_lie_on_the_grid():
    weight, hessian, _ = random_problem(8, 32)
    per_row = gptq_quantize(weight, hessian, 3).weight
    assert max(len(torch.unique(row)) for row in per_row) <= 8
    grouped = gptq_quantize(weight, hessian, 2, group_size=8).weight
    assert distinct_per_group(grouped, 8) <= 4
    assert not torch.equal(grouped, round_to_nearest(weight, 2, group_size=8))  # the updates changed them


@pytest.mark.parametrize(
    ("bits", "group_size", "symmetric"), [(4, None, False), (3, None, True), (4, 4, False), (2, 8, True)]
)
@pytest.mark.parametrize("blocksize", [128, 6])
def test_gptq_equals_the_column_by_column_obq_update(bits, group_size, symmetric, blocksize):
    weight, hessian, _ = random_problem(8, 16)
    expected, expected_loss = obq_reference(weight, hessian, bits, group_size, symmetric)
    result = gptq_quantize(weight, hessian, bits, group_size, symmetric, blocksize=blocksize)
    difference = (result.weight.double() - expected).abs().max().item()
    print(
        f"OBQ equivalence bits={bits} group={group_size} symmetric={symmetric} blocksize={blocksize}: "
        f"max |diff| {difference:.2e}"
    )
    assert difference < 1e-5
    assert result.loss == pytest.approx(expected_loss, rel=1e-4)


def test_blocks_narrower_than_the_width_give_the_one_block_result():
    weight, hessian, _ = random_problem(8, 32, seed=1)
    for group_size in (None, 8, 16):  # 16 with blocks of 4 and 12: groups cross block boundaries
        whole = gptq_quantize(weight, hessian, 3, group_size, blocksize=32).weight
        for blocksize in (4, 12):
            blocked = gptq_quantize(weight, hessian, 3, group_size, blocksize=blocksize).weight
            assert (blocked - whole).abs().max() < 1e-5, (group_size, blocksize)


@pytest.mark.parametrize("group_size", [None, 4])
def test_act_order_is_the_obq_update_in_descending_diag_order(group_size):
    weight, hessian, _ = random_problem(8, 16, seed=2)
    order = torch.argsort(torch.diagonal(hessian), descending=True, stable=True)
    assert not torch.equal(order, torch.arange(16))
    expected, _ = obq_reference(weight, hessian, 4, group_size, order=order)
    result = gptq_quantize(weight, hessian, 4, group_size, act_order=True, blocksize=5).weight
    difference = (result.double() - expected).abs().max().item()
    print(f"OBQ equivalence act_order group={group_size}: max |diff| {difference:.2e}")
    assert difference < 1e-5
    assert not torch.allclose(result, gptq_quantize(weight, hessian, 4, group_size).weight)
    if group_size is not None:  # groups follow the visiting order
        assert distinct_per_group(result[:, order], group_size) <= 16


def test_gptq_output_error_is_lower_than_rtn():
    for seed in range(3):
        weight, hessian, inputs = random_problem(16, 32, seed=seed)
        for bits, group_size in ((3, None), (4, 8)):
            gptq = gptq_quantize(weight, hessian, bits, group_size).weight
            rtn = round_to_nearest(weight, bits, group_size)
            gptq_error = torch.linalg.norm((weight - gptq) @ inputs.T)
            rtn_error = torch.linalg.norm((weight - rtn) @ inputs.T)
            assert gptq_error < rtn_error, (seed, bits, group_size)


def test_dead_inputs_are_dropped_as_sparsegpt_does():
    weight, hessian, _ = random_problem(8, 16, seed=3)
    hessian[5, :] = 0.0
    hessian[:, 5] = 0.0
    result = gptq_quantize(weight, hessian, 4).weight
    assert torch.equal(result[:, 5], torch.zeros(8)) and torch.isfinite(result).all()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--prune.bits", "0"], "prune.bits must be an integer from 2 to 8"),
        (["--prune.bits", "17"], "prune.bits must be an integer from 2 to 8"),
        (["--prune.group_size", "24"], "prune.group_size 24 must divide every Linear input size"),
        (["--prune.group_size", "0"], "prune.group_size must be positive"),
        (["--prune.pattern", "2:4"], "quantizes and prunes nothing"),
    ],
)
@pytest.mark.parametrize("method", ["gptq", "rtn"])
def test_bad_quantization_settings_are_one_line(tiny_model_dir, tmp_path, capsys, method, flags, message):
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), "--prune.method", method, *flags]
    assert main([*argv, *SMALL]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not (out / "summary.json").exists()


def test_a_quantized_run_completes_and_saves_grid_weights(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), "--prune.method", "gptq"]
    argv += ["--prune.bits", "4", "--prune.group_size", "16", "--save_model", "true"]
    assert main([*argv, *SMALL]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "status").read_text().strip() == "COMPLETE" and summary["method"] == "gptq"
    assert summary["target_sparsity"] == 0.0 and summary["sparsity"] < 0.5  # nothing pruned: only exact zeros
    masks = lp_prune.load_masks(out)
    assert len(masks) == 3 * 7 and not any(mask.any() for mask in masks.values())  # every weight kept
    model, _ = load_run_model(out)
    modules = dict(model.named_modules())
    for name in masks:
        weight = modules[name].weight.detach()
        assert distinct_per_group(weight, 16) <= 16, name
        assert len(torch.unique(weight)) > 16, name  # groups have grids of their own
    assert all(record["solver_loss"] is not None for record in summary["modules"])


def test_a_group_size_that_does_not_divide_the_width_is_refused_at_prune_time():
    from lp_prune.errors import ConfigError
    from lp_prune.pruning import GroupInputs, PruneContext, Runtime, method_named

    weight, hessian, _ = random_problem(8, 16)
    message = re.escape("prune.group_size 6 does not divide a Linear's input size 16")
    with pytest.raises(ConfigError, match=message):
        gptq_quantize(weight, hessian, 4, group_size=6)
    with pytest.raises(ConfigError, match=message):
        method_named("rtn", {"group_size": 6}).prune([weight], 0.5, GroupInputs(), PruneContext(), Runtime())
    with pytest.raises(ConfigError, match="must divide every Linear input size of this model"):
        method_named("gptq", {"group_size": 6}).check(PruneContext(input_sizes=(16, 32)))
    method_named("gptq", {"group_size": -1}).check(PruneContext(input_sizes=(16, 30)))  # -1: per row, fits any
