"""LSAR (Xie et al., EMNLP 2022): split hidden states, and pruning errors, into a language-specific
low-rank subspace and the language-agnostic rest.

At one layer the dense model's mean hidden state per language forms M (d x K). The steps follow the
reference `lsar()` (fffffarmer/LSAR, src/alignment/_low_rank.py):
1. c = M 1 / K (the mean of the columns); the top r singular triplets of M - c 1^T (r <= K - 1)
   rebuild M at low rank: B = c 1^T + U_r S_r V_r^T.
2. The common direction is w = pinv(B)^T 1, normalised: the direction on which every column of B
   has the same projection (B^T w = 1). It is not the mean direction c, which only coincides with
   it when the columns' deviations from c happen to be orthogonal to c.
3. U_s = the top r left singular vectors of B with w projected out. The reference subtracts the
   common vector (w / ||w||^2) from every column, which is the same matrix, since every column's
   component along w is exactly that vector. U_s is orthogonal to w.
pinv(B) is taken from B's top r + 1 singular triplets (B has rank r + 1 at most), and singular
values below 1e-10 of the largest count as zero: that is the exact pseudo-inverse of B, without
inverting singular values that are only rounding (on the planted cases of tests/test_lsar_reference.py
the subspace agrees with numpy's default pinv to within 1e-5 degrees). Where no direction
with equal projections exists (c inside the span of U_r: 1 is then outside B's row space, w is at
rounding level and the reference divides by zero), nothing is projected out and `common` is the zero
vector, with a warning: U_s is then the span of B itself, the limit of the reference's U_s as c
approaches that span.

For a hidden state h: h_spec = U_s U_s^T h, h_agn = h - h_spec (an orthogonal split, so squared
norms add up). The pruning error e = h - h' is split the same way and reported relative to each
part's magnitude: ||P_s e||^2 / ||P_s h||^2 and ||e - P_s e||^2 / ||h - P_s h||^2, summed over tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


class MeanAccumulator:
    """Streaming mean hidden state per layer: sums in float64 and token counts."""

    def __init__(self, n_layers: int, hidden_size: int) -> None:
        self.sums = torch.zeros(n_layers, hidden_size, dtype=torch.float64)
        self.counts = torch.zeros(n_layers, dtype=torch.long)

    def update(self, layer: int, hidden: torch.Tensor) -> None:
        """Add hidden states [..., d] of one layer."""
        flat = hidden.detach().reshape(-1, hidden.shape[-1]).double()
        self.sums[layer] += flat.sum(0)
        self.counts[layer] += flat.shape[0]

    def means(self) -> torch.Tensor:
        """[n_layers, d]; a layer that saw no token is an error, not a silent zero vector."""
        if bool((self.counts == 0).any()):
            raise ValueError("some layers saw no tokens: no mean hidden state")
        return self.sums / self.counts[:, None]


@dataclass
class LanguageSubspace:
    """common: unit vector of the language-agnostic direction [d] (zero where none exists);
    basis: orthonormal U_s [d, r]."""

    common: torch.Tensor
    basis: torch.Tensor
    singular_values: torch.Tensor  # of the re-orthogonalised language-specific part, top r

    def specific(self, hidden: torch.Tensor) -> torch.Tensor:
        """P_s h = U_s U_s^T h for hidden states [..., d]."""
        basis = self.basis.to(hidden.dtype)
        return (hidden @ basis) @ basis.T


def language_subspace(means: torch.Tensor, rank: int | None = None) -> LanguageSubspace:
    """The LSAR decomposition of M = means (d x K, one column per language); rank defaults to K - 1."""
    n_languages = means.shape[1]
    rank = n_languages - 1 if rank is None else rank
    if n_languages < 2:
        raise ValueError("LSAR needs the mean hidden states of at least two languages")
    if not 1 <= rank <= n_languages - 1:
        raise ValueError(f"LSAR rank must lie in [1, {n_languages - 1}] for {n_languages} languages, got {rank}")
    means = means.double()
    centre = means.mean(dim=1, keepdim=True)
    u, s, vh = torch.linalg.svd(means - centre, full_matrices=False)
    rebuild = centre + (u[:, :rank] * s[:rank]) @ vh[:rank]
    direction = equal_projection_direction(rebuild, max_rank=rank + 1)
    if direction is None:
        log.warning("LSAR: no direction projects equally on every language; no common direction is removed")
        direction = torch.zeros_like(centre[:, 0])
    specific_part = rebuild - torch.outer(direction, direction @ rebuild)
    u2, s2, _ = torch.linalg.svd(specific_part, full_matrices=False)
    return LanguageSubspace(common=direction, basis=u2[:, :rank].contiguous(), singular_values=s2[:rank])


def equal_projection_direction(matrix: torch.Tensor, max_rank: int) -> torch.Tensor | None:
    """Unit pinv(A)^T 1 for A = matrix (d x K) of rank <= max_rank: the direction w with A^T w = 1, so
    every column has the same projection on it. None when 1 is outside A's row space (no such w)."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    cut = s[0] * 1e-10  # below this a singular value is rounding: A's rank is lower than it looks
    keep = min(max_rank, int((s > cut).sum()))
    if keep == 0:
        return None
    ones = torch.ones(matrix.shape[1], dtype=matrix.dtype)
    w = u[:, :keep] @ ((vh[:keep] @ ones) / s[:keep])
    if not torch.allclose(matrix.T @ w, ones, rtol=0.0, atol=1e-6):
        return None
    return _unit(w)


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / vector.norm().clamp_min(torch.finfo(vector.dtype).tiny)


class SubspaceErrors:
    """Streaming squared pruning error and squared dense norm per layer, split by a LanguageSubspace."""

    def __init__(self, n_layers: int) -> None:
        zeros = lambda: torch.zeros(n_layers, dtype=torch.float64)  # noqa: E731
        self.specific_error, self.agnostic_error, self.total_error = zeros(), zeros(), zeros()
        self.specific_norm, self.agnostic_norm = zeros(), zeros()

    def update(self, layer: int, subspace: LanguageSubspace, dense: torch.Tensor, pruned: torch.Tensor) -> None:
        dense = dense.detach().double()
        error = dense - pruned.detach().double()
        error_specific = subspace.specific(error)
        dense_specific = subspace.specific(dense)
        self.specific_error[layer] += error_specific.square().sum()
        self.agnostic_error[layer] += (error - error_specific).square().sum()
        self.total_error[layer] += error.square().sum()
        self.specific_norm[layer] += dense_specific.square().sum()
        self.agnostic_norm[layer] += (dense - dense_specific).square().sum()

    def add(self, other: SubspaceErrors) -> None:
        """Pool another accumulator into this one (e.g. all evaluation languages)."""
        for name in ("specific_error", "agnostic_error", "total_error", "specific_norm", "agnostic_norm"):
            getattr(self, name).add_(getattr(other, name))

    def relative_specific(self) -> list[float]:
        return _ratio(self.specific_error, self.specific_norm)

    def relative_agnostic(self) -> list[float]:
        return _ratio(self.agnostic_error, self.agnostic_norm)

    def specific_share(self) -> list[float]:
        """Share of the squared error that lies in the language-specific subspace."""
        return _ratio(self.specific_error, self.total_error)


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> list[float]:
    return [float(n / d) if d > 0 else float("nan") for n, d in zip(numerator, denominator, strict=True)]


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between the column spaces of two orthonormal bases."""
    cosines = torch.linalg.svdvals(a.double().T @ b.double()).clamp(-1.0, 1.0)
    return torch.arccos(cosines).flip(0)


def lsar_summary(errors: SubspaceErrors) -> dict[str, list[float]]:
    return {
        "specific": errors.relative_specific(),
        "agnostic": errors.relative_agnostic(),
        "specific_share": errors.specific_share(),
    }


def pooled_errors(per_language: dict[str, SubspaceErrors]) -> SubspaceErrors:
    first = next(iter(per_language.values()))
    pooled = SubspaceErrors(first.total_error.numel())
    for errors in per_language.values():
        pooled.add(errors)
    return pooled
