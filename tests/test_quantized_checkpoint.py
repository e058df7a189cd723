"""The grids the quantizing methods record, and how they travel to the saved run."""

import pytest
import torch

from lp_prune.calibration.checkpoint import LayerCheckpoint, load_layer_results
from lp_prune.calibration.results import LayerResult, LinearResult, ModuleRecord
from lp_prune.pruning import GroupInputs, PruneSettings, Runtime, get_method
from lp_prune.pruning.masks import packed_mask
from tiny_models import tiny_model

# --- the grid each method records -----------------------------------------------------------------

GRID_CASES = {
    "gptq per channel": ("gptq", {}),
    "gptq grouped": ("gptq", {"group_size": 16}),
    "gptq act_order": ("gptq", {"act_order": True}),
    "gptq act_order grouped": ("gptq", {"act_order": True, "group_size": 16}),
    "gptq symmetric": ("gptq", {"symmetric": True, "group_size": 32}),
    "gptq 3 bits": ("gptq", {"bits": 3, "group_size": 16}),
    "rtn per channel": ("rtn", {}),
    "rtn grouped symmetric": ("rtn", {"group_size": 16, "symmetric": True}),
    "sparsegpt_gptq per channel": ("sparsegpt_gptq", {}),
    "sparsegpt_gptq grouped": ("sparsegpt_gptq", {"group_size": 16}),
}


def solve(method, settings, rows=(24, 16), columns=64):
    """Two weights sharing one input (a stacked solve), pruned/quantized by `method`."""
    torch.manual_seed(0)
    weights = [torch.randn(r, columns) for r in rows]
    inputs = torch.randn(400, columns) * torch.linspace(0.1, 3.0, columns)  # act_order reorders these
    gram = (inputs.T @ inputs).float()
    stats = GroupInputs(sq_norms=inputs.square().sum(0), gram=gram, samples=1)
    return weights, get_method(method).prune(weights, 0.5, stats, PruneSettings(**settings, blocksize=32), Runtime())


@pytest.mark.parametrize("case", list(GRID_CASES))
def test_the_recorded_grid_reproduces_the_weights_exactly(case):
    method, flags = GRID_CASES[case]
    settings = PruneSettings(**flags)
    weights, results = solve(method, flags)
    for weight, result in zip(weights, results, strict=True):
        grid = result.grid
        assert (grid.bits, grid.symmetric, grid.group_size) == (settings.bits, settings.symmetric, settings.group_size)
        groups = 1 if settings.group_size is None else weight.shape[1] // settings.group_size
        assert grid.scale.shape == grid.zero.shape == (weight.shape[0], groups)
        assert (grid.g_idx is not None) == (settings.act_order and settings.group_size is not None)
        codes = grid.codes(result.weight)
        assert torch.equal(codes, codes.round()) and codes.min() >= 0 and codes.max() <= 2**grid.bits - 1
        assert result.weight.dtype == torch.float32
        index = grid.column_groups(weight.shape[1])
        assert torch.equal(grid.scale[:, index] * (codes - grid.zero[:, index]), result.weight)
        assert_zero_points_fit(grid, result.weight)


def assert_zero_points_fit(grid, weight):
    """The zero points are the ones the codes were rounded around: an asymmetric grid's unclamped codes
    span exactly [0, 2^bits - 1] somewhere (a zero point off by one pushes them out); a symmetric grid's
    zero is the middle of the grid."""
    top = 2**grid.bits - 1
    assert torch.equal(grid.zero, grid.zero.round()) and grid.zero.min() >= 0 and grid.zero.max() <= top
    if grid.symmetric:
        assert (grid.zero == 2 ** (grid.bits - 1)).all()
        return
    index = grid.column_groups(weight.shape[1])
    raw = torch.round(weight / grid.scale[:, index]) + grid.zero[:, index]
    assert raw.min() == 0 and raw.max() == top


def test_act_order_groups_are_consecutive_visited_columns():
    _, results = solve("gptq", {"act_order": True, "group_size": 16})
    g_idx = results[0].grid.g_idx
    assert g_idx.dtype == torch.int64 and torch.equal(torch.bincount(g_idx), torch.full((4,), 16))
    assert not torch.equal(g_idx, torch.arange(64) // 16)  # scattered: the inputs grow in energy to the right
    assert g_idx[-1] == 0 and g_idx[0] == 3  # the strongest input (rightmost here) is visited first, the weakest last


def test_pruned_entries_of_the_joint_method_are_the_zero_point():
    _, results = solve("sparsegpt_gptq", {"group_size": 16})
    for result in results:
        codes = result.grid.codes(result.weight)
        zeros = result.grid.zero[:, result.grid.column_groups(64)]
        assert result.mask.float().mean() == 0.5 and torch.equal(codes[result.mask], zeros[result.mask])


def test_codes_of_a_bfloat16_weight_cast_back_to_it_at_8_bits():
    """bfloat16 keeps 8 significant bits: at 8-bit codes, w / scale can round to the neighbouring code."""
    _, results = solve("gptq", {"bits": 8, "group_size": 16})
    for result in results:
        cast = result.weight.bfloat16()
        assert torch.equal(result.grid.dequantize(result.grid.codes(cast)).bfloat16(), cast)


def test_a_resumed_run_gets_the_grids_back_from_its_progress(tmp_path):
    model = tiny_model()
    prefix = "model.layers.0."
    names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    names += ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    linears, grids = [], {}
    for name in names:
        weight = model.get_submodule(prefix + name).weight.detach()
        flags = {"act_order": True, "group_size": 16} if weight.shape[1] == 32 else {}  # down_proj: per channel
        _, [result] = solve("gptq", flags, rows=(weight.shape[0],), columns=weight.shape[1])
        grid = result.grid
        record = ModuleRecord(0, prefix + name, weight.numel(), 0.0, 0.0, 0.0, 0.0, 0.0, None, None)
        mask = packed_mask(torch.zeros_like(weight, dtype=torch.bool))
        linears.append(LinearResult(prefix + name, weight, mask, record, grid))
        grids[prefix + name] = grid
    LayerCheckpoint(tmp_path).save(LayerResult(0, linears))
    [replayed] = load_layer_results(tmp_path, model)
    for linear in replayed.linears:
        saved = grids[linear.name]
        assert (linear.grid.bits, linear.grid.symmetric, linear.grid.group_size) == (4, False, saved.group_size)
        assert torch.equal(linear.grid.scale, saved.scale) and torch.equal(linear.grid.zero, saved.zero)
        assert (linear.grid.g_idx is None) == (saved.g_idx is None)
        if saved.g_idx is not None:
            assert torch.equal(linear.grid.g_idx, saved.g_idx)
