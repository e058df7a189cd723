"""The column solver behind SparseGPT, GPTQ and the joint method: each method runs the one loop in
`pruning/obs.py` (with a mask chooser, a quantizer or both), so a method with a loop of its own fails
here before its results drift from the others'."""

import inspect
from pathlib import Path

import pytest
import torch

from lp_prune.pruning import obs
from lp_prune.pruning.gptq import gptq_quantize
from lp_prune.pruning.hessian import inverse_hessian_factor
from lp_prune.pruning.method import GroupInputs, PruneContext, Runtime
from lp_prune.pruning.registry import method_named
from lp_prune.pruning.sparsegpt import sparsegpt_prune
from lp_prune.pruning.sparsegpt_gptq import prune_and_quantize
from test_gptq import obq_reference, random_problem
from test_joint import joint_reference

PRUNE, QUANTIZE, BOTH = (True, False), (False, True), (True, True)


@pytest.fixture
def solver_calls(monkeypatch):
    """Every call of the shared column solver, as (has a mask chooser, has a quantizer)."""
    calls = []
    real = obs.solve_columns
    signature = inspect.signature(real)

    def spy(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append((bound.arguments["pruning"] is not None, bound.arguments["quantizer"] is not None))
        return real(*args, **kwargs)

    monkeypatch.setattr(obs, "solve_columns", spy)
    return calls


FUNCTIONS = {
    "sparsegpt unstructured": (lambda w, h: sparsegpt_prune(w, h, 0.5, blocksize=8), PRUNE),
    "sparsegpt 2:4": (lambda w, h: sparsegpt_prune(w, h, 0.0, n_m=(2, 4), blocksize=8), PRUNE),
    "gptq per row": (lambda w, h: gptq_quantize(w, h, 4, blocksize=8), QUANTIZE),
    "gptq groups act_order": (lambda w, h: gptq_quantize(w, h, 3, 8, act_order=True, blocksize=8), QUANTIZE),
    "joint unstructured": (lambda w, h: prune_and_quantize(w, h, 0.5, 4, 8, blocksize=8), BOTH),
    "joint 2:4": (lambda w, h: prune_and_quantize(w, h, 0.0, 4, n_m=(2, 4), blocksize=8), BOTH),
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_solver_function_runs_the_shared_column_loop_once(name, solver_calls):
    weight, hessian, _ = random_problem(8, 32, seed=11)
    solve, expected = FUNCTIONS[name]
    result = solve(weight, hessian)
    assert solver_calls == [expected]
    assert torch.isfinite(result.weight).all()


METHODS = [("sparsegpt", PRUNE, None), ("sparsegpt", PRUNE, (2, 4)), ("gptq", QUANTIZE, None)]
METHODS += [("sparsegpt_gptq", BOTH, None), ("sparsegpt_gptq", BOTH, (2, 4))]


@pytest.mark.parametrize(("method", "expected", "n_m"), METHODS)
def test_each_registered_method_solves_a_stacked_group_with_one_loop(method, expected, n_m, solver_calls):
    generator = torch.Generator().manual_seed(12)
    inputs = torch.randn(64, 32, generator=generator)
    weights = [torch.randn(rows, 32, generator=generator) for rows in (8, 4, 4)]  # q/k/v-like: one input
    group = GroupInputs(gram=inputs.T @ inputs, samples=64)
    chosen = method_named(method, {"blocksize": 16, "group_size": 8})
    pruned = chosen.prune(weights, 0.5, group, PruneContext(n_m=n_m), Runtime())
    assert solver_calls == [expected]
    assert [p.weight.shape for p in pruned] == [w.shape for w in weights]


def test_the_column_update_is_written_once():
    """The rank-1 OBS update of a column step appears in the solver only."""
    package = Path(obs.__file__).parent
    writers = sorted(path.name for path in package.glob("*.py") if ".addr_(" in path.read_text())
    assert writers == ["obs.py"]


def test_a_column_solve_needs_a_mask_chooser_or_a_quantizer():
    weight, hessian, _ = random_problem(4, 8)
    with pytest.raises(ValueError, match="mask chooser, a quantizer or both"):
        obs.solve_columns(weight.clone(), torch.linalg.cholesky(torch.linalg.inv(hessian)).T, 8)


@pytest.mark.parametrize("group_size", [None, 4, 8])
def test_inner_sub_blocks_keep_the_textbook_update_with_a_quantizer(group_size):
    """Sub-blocks narrower than the block (not the default with a quantizer) still give every group's
    grid its updated weights: those after the sub-block get its pending errors added first."""
    weight, hessian, _ = random_problem(8, 16)
    expected, _ = obq_reference(weight, hessian, 4, group_size)
    U, _ = inverse_hessian_factor(hessian, 0.01)
    for sub_block in (2, 3, 8):
        W = weight.clone()
        obs.solve_columns(W, U, 8, quantizer=obs.Quantizer(4, group_size=group_size), sub_block=sub_block)
        assert (W.double() - expected).abs().max() < 1e-5, sub_block


@pytest.mark.parametrize("n_m", [None, (2, 4)])
def test_inner_sub_blocks_keep_the_textbook_joint_update(n_m):
    weight, hessian, _ = random_problem(8, 16, seed=4)
    expected, expected_mask = joint_reference(weight, hessian, 0.5, 3, 8, n_m=n_m, blocksize=8)
    U, _ = inverse_hessian_factor(hessian, 0.01)
    for sub_block in (3, 4):
        W = weight.clone()
        pruning, quantizer = obs.Pruning(0.5 if n_m is None else 0.0, n_m), obs.Quantizer(3, group_size=8)
        solved = obs.solve_columns(W, U, 8, pruning, quantizer, sub_block=sub_block)
        assert torch.equal(solved.mask, expected_mask)
        assert (W.double() - expected).abs().max() < 1e-5, sub_block
