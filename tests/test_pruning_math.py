"""Pruning maths checked against independent computations (closed forms, brute force)."""

import math

import pytest
import torch

from lp_prune.metrics.pruning_error import local_error
from lp_prune.pruning import (
    InputStatistics,
    inverse_hessian_factor,
    magnitude_mask,
    sparsegpt_prune,
    wanda_mask,
)
from lp_prune.pruning.masks import lowest_mask
from lp_prune.pruning.method import GroupInputs, PruneContext, Runtime
from lp_prune.pruning.registry import method_named
from lp_prune.pruning.sparsegpt import sparsegpt_hessian


def correlated_inputs(tokens: int, d_in: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d_in, d_in, generator=g)
    return torch.randn(tokens, d_in, generator=g) @ mixing


def test_hessian_is_scaled_gram():
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(3, 5, 4, generator=g) for _ in range(3)]  # 9 samples of 5 tokens
    stats = InputStatistics(4)
    for batch in batches:
        stats.update(batch)
    X = torch.cat([b.reshape(-1, 4) for b in batches]).double()
    expected = 2.0 / 9 * (X.T @ X)
    assert stats.samples == 9 and stats.tokens == 45
    hessian = sparsegpt_hessian(stats.gram, stats.samples)
    assert hessian.dtype == torch.float32
    torch.testing.assert_close(hessian.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(stats.sq_norms.double(), (X**2).sum(0), rtol=1e-5, atol=1e-5)


def test_norm_only_statistics_match_gram_diagonal():
    x = torch.randn(2, 7, 6)
    full, light = InputStatistics(6), InputStatistics(6, keep_gram=False)
    full.update(x)
    light.update(x)
    torch.testing.assert_close(light.sq_norms, full.sq_norms)
    assert light.gram is None
    with pytest.raises(ValueError, match="no calibration inputs"):
        sparsegpt_hessian(torch.zeros(6, 6), 0)


def test_inverse_hessian_factor_is_upper_cholesky_of_inverse():
    X = correlated_inputs(64, 8).double()
    H = X.T @ X
    U, used = inverse_hessian_factor(H, 0.01)
    damped = H + 0.01 * torch.diagonal(H).mean() * torch.eye(8, dtype=H.dtype)
    assert used == 0.01
    assert torch.equal(U, torch.triu(U))
    torch.testing.assert_close(U.T @ U, torch.linalg.inv(damped), rtol=1e-6, atol=1e-8)


def test_damping_escalates_on_indefinite_hessian(caplog):
    H = torch.diag(torch.tensor([1.0, 1.0, -1.5]))  # mean diag 1/6: needs damping above 9x
    U, used = inverse_hessian_factor(H, 0.01)
    assert used > 0.01 and torch.isfinite(U).all()
    assert "not positive definite" in caplog.text


def test_single_pruned_weight_equals_closed_form_obs_update():
    """Pruning one weight (column 0, all others free) must be the exact optimal-brain-surgeon step."""
    torch.manual_seed(0)
    d_in, rows = 6, 3
    X = correlated_inputs(50, d_in).double()
    H = 2 * X.T @ X / 50
    W = torch.randn(rows, d_in, dtype=torch.float64) + 3.0
    W[:, 0] = torch.tensor([0.01, -0.02, 0.015])  # column 0 scores lowest in every row
    result = sparsegpt_prune(W, H, sparsity=1 / (rows * d_in) * rows, blocksize=128, percdamp=0.01)

    Hd = H + 0.01 * torch.diagonal(H).mean() * torch.eye(d_in, dtype=H.dtype)
    Hinv = torch.linalg.inv(Hd)
    expected = W - (W[:, :1] / Hinv[0, 0]) * Hinv[0:1, :]  # OBS: dw = -w_q / [H^-1]_qq * H^-1[q, :]
    assert result.mask[:, 0].all() and result.mask.sum() == rows
    torch.testing.assert_close(result.weight, expected, rtol=1e-6, atol=1e-9)
    expected_loss = float((W[:, 0] ** 2 / Hinv[0, 0]).sum() / 2)  # OBS saliency w^2 / (2 [H^-1]_qq)
    assert result.loss == pytest.approx(expected_loss, rel=1e-6)


def test_obs_update_is_optimal_reconstruction():
    """With one weight pruned, no other value of the free weights reconstructs W X^T better."""
    X = correlated_inputs(80, 5).double()
    H = 2 * X.T @ X / 80
    W = torch.tensor([[0.001, 1.0, -2.0, 0.5, 1.5]], dtype=torch.float64)
    pruned = sparsegpt_prune(W, H, sparsity=0.2, percdamp=1e-9).weight
    # Least squares for the free weights: min ||X[:,1:] v - X W^T||
    v = torch.linalg.lstsq(X[:, 1:], X @ W.T).solution.T
    torch.testing.assert_close(pruned[:, 1:], v, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("blocksize", [4, 16, 128])
def test_sparsegpt_unstructured_exact_sparsity_per_block(blocksize):
    X = correlated_inputs(200, 32)
    W = torch.randn(16, 32)
    result = sparsegpt_prune(W, 2 * X.T @ X / 200, sparsity=0.5, blocksize=blocksize)
    for start in range(0, 32, blocksize):
        block = result.mask[:, start : start + blocksize]
        assert int(block.sum()) == block.numel() // 2
    assert torch.equal(result.weight == 0, result.mask | (W == 0))
    assert result.weight.dtype == W.dtype


def test_sparsegpt_reduces_error_below_plain_masking():
    X = correlated_inputs(300, 24)
    W = torch.randn(12, 24)
    H = 2 * X.T @ X / 300
    result = sparsegpt_prune(W, H, sparsity=0.5)
    masked_only = W.masked_fill(result.mask, 0)
    G = X.T @ X
    assert local_error(W, result.weight, G, 300).error < 0.8 * local_error(W, masked_only, G, 300).error


def test_sparsegpt_n_m_pattern_is_exact():
    X = correlated_inputs(100, 16)
    W = torch.randn(8, 16)
    result = sparsegpt_prune(W, 2 * X.T @ X / 100, sparsity=0.0, n_m=(2, 4), blocksize=8)
    groups = result.mask.reshape(8, 4, 4)
    assert (groups.sum(-1) == 2).all()
    assert (result.weight.reshape(8, 4, 4) == 0).sum(-1).min() >= 2


def test_sparsegpt_dead_inputs_are_zeroed_and_no_nans():
    X = correlated_inputs(40, 8)
    X[:, 3] = 0
    W = torch.randn(4, 8)
    result = sparsegpt_prune(W, 2 * X.T @ X / 40, sparsity=0.5)
    assert torch.isfinite(result.weight).all()
    assert (result.weight[:, 3] == 0).all()


def test_sparsegpt_half_precision_computes_in_float32():
    X = correlated_inputs(100, 16)
    W = torch.randn(8, 16)
    H = 2 * X.T @ X / 100
    full = sparsegpt_prune(W, H, 0.5)
    half = sparsegpt_prune(W.bfloat16(), H, 0.5)
    assert half.weight.dtype == torch.bfloat16
    assert (half.mask == full.mask).float().mean() > 0.9


def test_wanda_mask_per_row_against_brute_force():
    g = torch.Generator().manual_seed(3)
    W = torch.randn(5, 10, generator=g)
    sq_norms = torch.rand(10, generator=g) * 4
    mask = wanda_mask(W, sq_norms, sparsity=0.3)
    scores = W.abs() * sq_norms.sqrt()
    for row in range(5):
        expected = set(sorted(range(10), key=lambda j: scores[row, j].item())[:3])
        assert set(torch.nonzero(mask[row]).flatten().tolist()) == expected


def test_wanda_n_m():
    W = torch.randn(4, 12)
    mask = wanda_mask(W, torch.rand(12) + 0.1, sparsity=0.0, n_m=(2, 4))
    assert (mask.reshape(4, 3, 4).sum(-1) == 2).all()


def test_magnitude_mask_is_global_per_matrix():
    W = torch.tensor([[0.1, 5.0, 6.0], [0.2, 0.3, 7.0]])
    mask = magnitude_mask(W, sparsity=0.5)
    assert mask.tolist() == [[True, False, False], [True, True, False]]
    nm = magnitude_mask(torch.randn(3, 8), sparsity=0.0, n_m=(1, 2))
    assert (nm.reshape(3, 4, 2).sum(-1) == 1).all()


def test_n_m_needs_divisible_columns():
    with pytest.raises(ValueError):
        magnitude_mask(torch.randn(2, 6), 0.0, n_m=(2, 4))


def test_local_error_matches_direct_computation():
    X = correlated_inputs(120, 9)
    W = torch.randn(7, 9)
    Wp = W.masked_fill(torch.rand(7, 9) < 0.5, 0)
    measured = local_error(W, Wp, X.T @ X, tokens=120)
    y, yp = X @ W.T, X @ Wp.T
    noise = ((y - yp) ** 2).sum().item()
    assert measured.error == pytest.approx(noise / 120, rel=1e-4)
    assert measured.rel_error == pytest.approx(noise / (y**2).sum().item(), rel=1e-4)
    assert measured.snr_db == pytest.approx(10 * math.log10((y**2).sum().item() / noise), rel=1e-4)


def _group_inputs(X: torch.Tensor, windows: int) -> GroupInputs:
    return GroupInputs(sq_norms=(X**2).sum(0), gram=X.T @ X, samples=windows)


def test_registered_methods_compute_their_papers_masks():
    """Each method through the registry equals its algorithm called directly on independently
    computed statistics: SparseGPT on H = 2/n X^T X, Wanda on ||X_j||^2, magnitude on |W| alone."""
    X, W = correlated_inputs(64, 16), torch.randn(8, 16)
    inputs = _group_inputs(X, windows=4)
    pruned = {
        name: method_named(name).prune([W], 0.5, inputs, PruneContext(), Runtime())[0]
        for name in ("sparsegpt", "wanda", "magnitude")
    }
    direct = sparsegpt_prune(W, 2 * X.T @ X / 4, 0.5)
    assert torch.equal(pruned["sparsegpt"].mask, direct.mask)
    torch.testing.assert_close(pruned["sparsegpt"].weight, direct.weight)
    assert torch.equal(pruned["wanda"].mask, wanda_mask(W, (X**2).sum(0), 0.5))
    assert torch.equal(pruned["magnitude"].mask, magnitude_mask(W, 0.5))
    for name, out in pruned.items():
        assert out.mask.float().mean().item() == pytest.approx(0.5), name
        assert (out.weight[out.mask] == 0).all(), name
        if not method_named(name).updates_kept_weights:
            assert torch.equal(out.weight[~out.mask], W[~out.mask]), name
    assert not torch.equal(pruned["sparsegpt"].weight[~pruned["sparsegpt"].mask], W[~pruned["sparsegpt"].mask])


def test_sparsegpt_refuses_an_n_m_pattern_its_blocks_would_split():
    from lp_prune.errors import ConfigError

    two_four = PruneContext(n_m=(2, 4))
    method_named("sparsegpt", {"blocksize": 128}).check(two_four)
    with pytest.raises(ConfigError, match="multiple of M=4"):
        method_named("sparsegpt", {"blocksize": 6}).check(two_four)
    method_named("wanda", {"blocksize": 6}).check(two_four)  # Wanda has no blocks: the key is ignored


def test_lazy_batch_update_equals_column_by_column():
    """N:M masks do not depend on the block size, so block size 4 and one big block must agree."""
    X = correlated_inputs(100, 32)
    W = torch.randn(6, 32)
    H = 2 * X.T @ X / 100
    small = sparsegpt_prune(W, H, 0.0, n_m=(2, 4), blocksize=4)
    large = sparsegpt_prune(W, H, 0.0, n_m=(2, 4), blocksize=128)
    assert torch.equal(small.mask, large.mask)
    torch.testing.assert_close(small.weight, large.weight, rtol=1e-4, atol=1e-5)


def test_blocked_gram_equals_full_product_for_wide_inputs():
    from lp_prune.pruning.statistics import gram

    x = torch.randn(3, 40, 1100)  # 1100 = two full blocks of 512 and a partial one
    flat = x.reshape(-1, 1100).double()
    result = gram(x)
    torch.testing.assert_close(result.double(), flat.T @ flat, rtol=1e-5, atol=1e-3)
    assert torch.equal(result, result.T)  # mirrored blocks: exactly symmetric


@pytest.mark.parametrize("levels", [3, 1000, 10**9])  # many ties, some, almost none
def test_lowest_mask_equals_a_stable_sort(levels):
    """Exactly `count` per row, chosen as a stable argsort would: lowest first, ties by position."""
    generator = torch.Generator().manual_seed(levels % 1000)
    scores = torch.randint(0, levels, (64, 40), generator=generator).float()
    for count in (0, 1, 17, 40):
        expected = torch.zeros_like(scores, dtype=torch.bool)
        order = torch.sort(scores, dim=-1, stable=True).indices[:, :count]
        expected.scatter_(1, order, True)
        assert torch.equal(lowest_mask(scores, count), expected), count


# --- statistics that do not depend on how the work is split ------------------------------------------


def test_statistics_do_not_depend_on_batching_or_process_split():
    """Per-window float32 Grams summed in float64: batches of 1, of 4, or two processes' partial sums
    (added as an all-reduce would) give bit-identical float32 Hessians and norms."""
    windows = correlated_inputs(8 * 64, 48, seed=5).reshape(8, 64, 48) * 30
    one_by_one, all_at_once, first_half, second_half = (InputStatistics(48) for _ in range(4))
    for window in windows.split(1):
        one_by_one.update(window)
    all_at_once.update(windows)
    first_half.update(windows[:4])
    second_half.update(windows[4:], first_window=4)
    first_half.gram += second_half.gram
    first_half.tokens += second_half.tokens
    first_half.samples += second_half.samples
    assert torch.equal(one_by_one.gram, all_at_once.gram)
    assert torch.equal(one_by_one.gram, first_half.gram)
    assert torch.equal(one_by_one.sq_norms, all_at_once.sq_norms)


def _mirrored_add_per_window(windows: torch.Tensor, block: int = 512) -> torch.Tensor:
    """The reference: every window's upper block products added, and their transposes added below."""
    total = torch.zeros(windows.shape[-1], windows.shape[-1], dtype=torch.float64)
    for window in windows:
        for start in range(0, window.shape[1], block):
            end = min(start + block, window.shape[1])
            product = window[:, start:end].T @ window[:, start:]
            total[start:end, start:] += product
            total[end:, start:end] += product[:, end - start :].T
    return total


def test_wide_gram_equals_the_mirrored_sum_of_window_products_bit_for_bit():
    """Inputs wider than a block (1100 = 512 + 512 + 76): the upper blocks are summed, the lower ones
    copied when read; the result is the per-window mirrored sum exactly, and symmetric."""
    windows = correlated_inputs(3 * 32, 1100, seed=2).reshape(3, 32, 1100) * 10
    stats = InputStatistics(1100)
    stats.update(windows)
    assert torch.equal(stats.gram, _mirrored_add_per_window(windows))
    assert torch.equal(stats.gram[512:, :512], stats.gram[:512, 512:].T)
    reference = sum(w.double().T @ w.double() for w in windows)
    assert float((stats.gram - reference).norm() / reference.norm()) < 1e-6


def test_wide_gram_read_between_updates_is_still_the_whole_sum():
    """Reading the Gram (which fills the lower blocks) and adding windows after it: the next read
    holds every window, below the diagonal blocks too; as does a sum over processes' accumulators."""
    windows = correlated_inputs(4 * 32, 1100, seed=3).reshape(4, 32, 1100)
    read_between, at_once, second = InputStatistics(1100), InputStatistics(1100), InputStatistics(1100)
    read_between.update(windows[:2])
    assert read_between.gram is not None
    read_between.update(windows[2:], first_window=2)
    at_once.update(windows)
    assert torch.equal(read_between.gram, at_once.gram)
    first = InputStatistics(1100)
    first.update(windows[:2])
    assert first.gram is not None  # read before the processes' sums are added
    second.update(windows[2:], first_window=2)
    first.accumulator.add_(second.accumulator)  # what an all-reduce does
    assert torch.equal(first.gram, at_once.gram)


def test_float32_running_sums_would_depend_on_the_split():
    """The fault the float64 sum guards against, planted: float32 sums in two orders differ."""
    windows = correlated_inputs(8 * 64, 48, seed=5).reshape(8, 64, 48) * 30
    grams = [w.T @ w for w in windows]
    sequential = torch.zeros(48, 48)
    for g in grams:
        sequential += g
    halves = (grams[0] + grams[1] + grams[2] + grams[3]) + (grams[4] + grams[5] + grams[6] + grams[7])
    assert not torch.equal(sequential, halves)


def test_token_sample_is_fixed_per_window_and_sized():
    from lp_prune.pruning.statistics import TokenSample

    sample = TokenSample(tokens=512, total_tokens=64 * 256, seed=0)
    assert torch.equal(sample.positions(7, 256), sample.positions(7, 256))
    assert not torch.equal(sample.positions(7, 256), sample.positions(8, 256))
    chosen = sum(int(sample.positions(w, 256).sum()) for w in range(64))
    assert 400 < chosen < 624  # binomial(16384, 1/32): mean 512, sd 22
    assert TokenSample(tokens=10**6, total_tokens=100).positions(0, 100).all()


def test_sampled_inputs_give_the_exact_error_when_every_token_is_sampled():
    from lp_prune.metrics.pruning_error import error_from_sums, error_sums
    from lp_prune.pruning.statistics import TokenSample

    X = correlated_inputs(4 * 30, 9).reshape(4, 30, 9)
    stats = InputStatistics(9, keep_gram=False, sample=TokenSample(10**6, X.numel()))
    stats.update(X)
    W = torch.randn(7, 9)
    Wp = W.masked_fill(torch.rand(7, 9) < 0.5, 0)
    sample = stats.sample_inputs()
    assert sample.shape == (120, 9)
    sampled = error_from_sums(*error_sums(W, Wp, sample), sample.shape[0])
    flat = X.reshape(-1, 9)
    exact = local_error(W, Wp, flat.T @ flat, tokens=120)
    assert sampled.snr_db == pytest.approx(exact.snr_db, rel=1e-4)
    assert sampled.error == pytest.approx(exact.error, rel=1e-4)


# --- stacked SparseGPT solves ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_m", [None, (2, 4)])
def test_stacked_solve_equals_separate_solves(n_m):
    """q/k/v-like weights sharing one Hessian: one factorisation and one column loop over their rows
    give each weight its own solve's mask and weights (to float32 rounding) and loss."""
    from lp_prune.pruning.sparsegpt import sparsegpt_prune_stacked

    X = correlated_inputs(300, 64, seed=2)
    H = 2 * X.T @ X / 300
    g = torch.Generator().manual_seed(4)
    weights = [torch.randn(rows, 64, generator=g) * scale for rows, scale in ((32, 1.0), (8, 3.0), (8, 0.2))]
    separate = [sparsegpt_prune(w, H, 0.5, n_m=n_m, blocksize=16) for w in weights]
    stacked = sparsegpt_prune_stacked(weights, H, 0.5, n_m=n_m, blocksize=16)
    for alone, together in zip(separate, stacked, strict=True):
        assert torch.equal(alone.mask, together.mask)
        torch.testing.assert_close(together.weight, alone.weight, rtol=0, atol=1e-5)
        assert together.loss == pytest.approx(alone.loss, rel=1e-5)
    # Each weight's own 50% per block, although their scales differ 15-fold (a pooled choice would not).
    for weight, result in zip(weights, stacked, strict=True):
        assert int(result.mask.sum()) == weight.numel() // 2
    assert stacked[0].weight.untyped_storage().data_ptr() != stacked[1].weight.untyped_storage().data_ptr()


def test_in_place_factor_overwrites_the_given_hessian_only_when_asked():
    X = correlated_inputs(64, 12).double()
    H = (X.T @ X).float()
    kept = H.clone()
    U, _ = inverse_hessian_factor(H, 0.01)
    assert torch.equal(H, kept)
    U2, _ = inverse_hessian_factor(H, 0.01, in_place=True)
    assert U2.data_ptr() == H.data_ptr() and torch.equal(U2, U)


def test_flip_in_place_reverses_both_axes():
    from lp_prune.pruning.sparsegpt import flip_in_place

    for n in (1, 5, 6, 601):
        matrix = torch.randn(n, n)
        expected = matrix.flip(0, 1)
        flip_in_place(matrix, rows=7)
        assert torch.equal(matrix, expected)


# --- language-aware statistics --------------------------------------------------------------------------


def test_balanced_statistics_equal_a_hand_computation():
    """Three English windows and one Swahili: balanced gives each language half of the total weight."""
    from lp_prune.pruning.statistics import window_weights

    windows = correlated_inputs(4 * 16, 6, seed=7).reshape(4, 16, 6)
    weights = window_weights(["en", "en", "en", "sw"], "balanced")
    assert weights.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0])
    stats = InputStatistics(6, weights=weights)
    stats.update(windows[:2])
    stats.update(windows[2:], first_window=2)
    X = windows.double()
    english = sum(X[i].T @ X[i] for i in range(3)) / 3  # each language's mean window Gram ...
    swahili = X[3].T @ X[3]
    torch.testing.assert_close(stats.gram, (english + swahili) / 2 * 4, rtol=1e-4, atol=1e-4)  # ... x 4 windows
    pooled = InputStatistics(6)
    pooled.update(windows)
    torch.testing.assert_close(pooled.gram, sum(X[i].T @ X[i] for i in range(4)), rtol=1e-4, atol=1e-4)
    assert window_weights(["en", "sw"], "pooled") is None


def test_weighted_statistics_follow_the_given_shares():
    from lp_prune.pruning.statistics import window_weights

    weights = window_weights(["en", "en", "sw", "zh"], "weighted", {"en": 2.0, "sw": 1.0, "zh": 1.0})
    assert weights.tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0])  # shares equal to the window shares
    weights = window_weights(["en", "en", "sw", "zh"], "weighted", {"en": 0.25, "sw": 0.5, "zh": 0.25})
    assert weights.tolist() == pytest.approx([0.5, 0.5, 2.0, 1.0])
    assert float(weights.sum()) == pytest.approx(4.0)


def test_gram_adds_float32_products_into_a_float64_sum():
    """add_gram writes each float32 block product straight into the float64 target's upper block
    triangle: mirrored, the sum equals the float32 Gram, widened, times alpha, bit for bit."""
    from lp_prune.pruning.statistics import add_gram, gram, mirror_gram

    x = torch.randn(2, 30, 1100)
    target = torch.ones(1100, 1100, dtype=torch.float64)
    add_gram(target, x, alpha=0.25)
    assert torch.equal(target[512:, :512], torch.ones(588, 512, dtype=torch.float64))  # below: untouched
    mirror_gram(target)
    assert torch.equal(target, torch.ones_like(target) + 0.25 * gram(x).double())
    expected = torch.zeros(1100, 1100, dtype=torch.float64)
    flat = x.reshape(-1, 1100)
    for start in range(0, 1100, 512):  # the products a block-free float32 X^T X would not match bitwise
        expected[start : start + 512, start:] = (flat[:, start : start + 512].T @ flat[:, start:]).double()
    assert torch.equal(torch.triu(target - 1) * 4, torch.triu(expected))


def test_sparsegpt_result_does_not_depend_on_the_callers_thread_count():
    """With factor_threads the factorisation runs on the machine's thread count whatever the
    process's own (data-parallel processes get fewer): masks and weights equal bit for bit."""
    from lp_prune.pruning.sparsegpt import sparsegpt_prune
    from lp_prune.runtime import factor_threads

    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2200, 2048, generator=generator)
    hessian = x.T @ x / 2200
    weight = torch.randn(64, 2048, generator=generator)
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(sparsegpt_prune(weight, hessian, 0.5, factorisation=factor_threads))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0].mask, results[1].mask)
    assert torch.equal(results[0].weight, results[1].weight)
