"""Local pruning error of one Linear from the Gram matrix of its calibration inputs.

With G = sum_t x_t x_t^T and D = W - W', the squared output error over all calibration tokens is
sum_t ||D x_t||^2 = trace(D G D^T): exact, and far cheaper than re-running the tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class LocalError:
    error: float  # ||(W - W') X^T||_F^2 / tokens
    rel_error: float  # error / (||W X^T||_F^2 / tokens)
    snr_db: float  # 10 log10(sum y^2 / sum (y - y')^2), y = W x, y' = W' x


def quadratic_form(weight: torch.Tensor, gram: torch.Tensor) -> float:
    """trace(W G W^T) = sum over tokens of ||W x||^2."""
    weight = weight.float()
    return float(((weight @ gram) * weight).sum())


def local_error(dense: torch.Tensor, pruned: torch.Tensor, gram: torch.Tensor, tokens: int) -> LocalError:
    """The error of `pruned` on all inputs whose Gram is `gram` (trace form, exact)."""
    signal = quadratic_form(dense, gram)
    noise = max(quadratic_form(dense.float() - pruned.float(), gram), 0.0)
    return error_from_sums(signal, noise, tokens)


def error_sums(dense: torch.Tensor, pruned: torch.Tensor, inputs: torch.Tensor) -> tuple[float, float]:
    """(sum ||W x||^2, sum ||(W - W') x||^2) over the given inputs [tokens, d_in] (e.g. a token sample)."""
    inputs = inputs.float()
    signal = float((inputs @ dense.float().T).square().sum())
    noise = float((inputs @ (dense.float() - pruned.float()).T).square().sum())
    return signal, noise


def error_from_sums(signal: float, noise: float, tokens: int) -> LocalError:
    """Error, relative error and SNR from the summed squared outputs and errors over `tokens` tokens."""
    return LocalError(
        error=noise / max(tokens, 1),
        rel_error=noise / signal if signal > 0 else math.nan,
        snr_db=snr_db(signal, noise),
    )


def snr_db(signal: float, noise: float) -> float:
    """10 log10(signal / noise) in dB; +inf for a perfect reconstruction."""
    if noise <= 0:
        return math.inf
    if signal <= 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def sparsity(weight: torch.Tensor) -> float:
    """Fraction of exact zeros."""
    return float((weight == 0).sum()) / weight.numel()
