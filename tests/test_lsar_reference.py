"""LSAR against an independent computation of the reference's algebra (fffffarmer/LSAR `lsar()`).

The reference, for M (d x K, one column per language mean) and rank k:
  c = M 1 / K; the top k singular triplets of M - c 1^T give the low-rank rebuild B = c 1^T + U_k S_k V_k^T;
  w = pinv(B)^T 1 is the direction on which every column of B projects equally (B^T w = 1);
  the common vector is w / ||w||^2, and the specific subspace is the top k left singular vectors of
  B - (w / ||w||^2) 1^T, i.e. of B with the direction w projected out.
Written here in numpy, apart from the implementation under test (torch).
"""

import numpy as np
import pytest
import torch

from lp_prune.analysis.analyze.lsar import language_subspace, principal_angles


def reference_lsar(means: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit common direction, specific basis [d, rank], low-rank rebuild B) from the reference's algebra."""
    ones = np.ones(means.shape[1])
    centre = means @ ones / means.shape[1]
    u, s, vh = np.linalg.svd(means - np.outer(centre, ones), full_matrices=False)
    rebuild = np.outer(centre, ones) + (u[:, :rank] * s[:rank]) @ vh[:rank]
    # B has rank <= rank + 1: cut its rounding-level singular values instead of inverting them.
    w = np.linalg.pinv(rebuild, rtol=1e-10).T @ ones
    specific = rebuild - np.outer(w / (w @ w), ones)
    u2, _, _ = np.linalg.svd(specific, full_matrices=False)
    return w / np.linalg.norm(w), u2[:, :rank], rebuild


def planted_means(hidden: int, n_languages: int, rank: int, offset: float, tilt: float, noise: float, seed: int):
    """Language means c + U a_k (+ noise): a common vector c of norm `offset` with a component of
    relative size `tilt` inside the specific subspace U (d x rank), as hidden states have."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((hidden, rank + 1)))
    basis, outside = q[:, :rank], q[:, rank]
    inside = basis @ rng.standard_normal(rank)
    common = offset * (np.sqrt(1 - tilt**2) * outside + tilt * inside / np.linalg.norm(inside))
    coefficients = 3.0 * rng.standard_normal((rank, n_languages))
    coefficients -= coefficients.mean(axis=1, keepdims=True)
    means = common[:, None] + basis @ coefficients + noise * rng.standard_normal((hidden, n_languages))
    return means, basis


# (hidden, languages, planted rank, rank asked for, common norm, tilt of c into U, noise)
CASES = {
    "full_rank_tilted": (48, 6, 5, 5, 5.0, 0.3, 0.0),
    "low_rank_noisy": (48, 6, 2, 2, 5.0, 0.4, 0.05),
    "large_offset": (64, 4, 3, 3, 20.0, 0.2, 0.01),
}


@pytest.mark.parametrize("case", list(CASES))
def test_subspace_matches_the_reference_algebra(case):
    hidden, n_languages, planted_rank, rank, offset, tilt, noise = CASES[case]
    means, _ = planted_means(hidden, n_languages, planted_rank, offset, tilt, noise, seed=1)
    direction, basis, rebuild = reference_lsar(means, rank)
    subspace = language_subspace(torch.from_numpy(means), rank)
    angles = principal_angles(subspace.basis, torch.from_numpy(basis))
    assert float(angles.max()) < 1e-4, f"largest principal angle {float(angles.max()):.3g} rad"
    assert abs(float(subspace.common.double() @ torch.from_numpy(direction))) == pytest.approx(1.0, abs=1e-8)
    # The removed direction's defining property: equal projection on every language of the rebuild
    # (with rank K - 1 the rebuild is M itself, so on every language mean).
    projections = subspace.common.double().numpy() @ rebuild
    assert np.ptp(projections) < 1e-8 * np.abs(projections).max()
    if rank == n_languages - 1:
        on_means = subspace.common.double().numpy() @ means
        assert np.ptp(on_means) < 1e-8 * np.abs(on_means).max()
    assert float(subspace.common.norm()) == pytest.approx(1.0, abs=1e-12)
    assert float((subspace.basis.T @ subspace.common).abs().max()) < 1e-10


def test_noise_free_plant_is_recovered_exactly_even_when_the_common_vector_leans_into_it():
    """Means c + U a_k exactly: the reference's split returns U itself although c is not orthogonal
    to U (the mean direction would tilt U by the part of c inside it)."""
    means, planted = planted_means(40, 5, 3, offset=8.0, tilt=0.5, noise=0.0, seed=2)
    subspace = language_subspace(torch.from_numpy(means), rank=3)
    assert float(principal_angles(subspace.basis, torch.from_numpy(planted)).max()) < 1e-6


def test_common_vector_inside_the_specific_span_removes_nothing(caplog):
    """c inside span(U): no direction projects equally on every language (the reference divides by
    zero); U_s is then span(U), the limit of the reference's answer as c approaches that span."""
    means, planted = planted_means(30, 5, 3, offset=4.0, tilt=1.0, noise=0.0, seed=3)
    subspace = language_subspace(torch.from_numpy(means), rank=3)
    assert float(principal_angles(subspace.basis, torch.from_numpy(planted)).max()) < 1e-6
    assert float(subspace.common.norm()) == 0.0
    assert "no direction projects equally" in caplog.text
    nearly = means + 1e-6 * np.linalg.qr(np.hstack([planted, np.ones((30, 1))]))[0][:, 3:]  # c just outside span(U)
    near = language_subspace(torch.from_numpy(nearly), rank=3)
    assert float(principal_angles(near.basis, subspace.basis).max()) < 1e-6
    assert float(near.common.norm()) == pytest.approx(1.0)
