"""Calibration statistics of a Linear's inputs, accumulated window by window.

One accumulator serves every consumer: SparseGPT needs the Hessian 2/n * sum_s X_s^T X_s, Wanda
the squared input norms ||X_j||^2 (the Gram diagonal), and the error metrics the Gram matrix itself.
Linears that read the same input (q/k/v, gate/up) share one accumulator.

Exact enough that the split of the work does not matter: each calibration window's X^T X is
computed on its own (float32) and added to a float64 sum. A window's Gram is the same whatever batch
it came in, and float64 sums of float32 terms round back to the same float32 values in any order, so
batch size and the number of data-parallel processes leave the statistics unchanged (fp32 partial
sums in another order moved SparseGPT's masks to IoU 0.94 on Gemma-3-270M).
"""

from __future__ import annotations

import torch

GRAM_BLOCK = 512
ACCUMULATOR = torch.float64


def gram(x: torch.Tensor, block: int = GRAM_BLOCK) -> torch.Tensor:
    """X^T X in float32 for inputs [..., d_in] flattened to tokens x d_in."""
    out = torch.zeros(x.shape[-1], x.shape[-1], device=x.device)
    add_gram(out, x, block=block)
    return mirror_gram(out, block)


def add_gram(target: torch.Tensor, x: torch.Tensor, alpha: float = 1.0, block: int = GRAM_BLOCK) -> None:
    """target += alpha * X^T X on the upper block triangle, with X^T X computed in float32 (target
    may be float64); `mirror_gram` fills the blocks below the diagonal blocks.

    X^T X is symmetric: for wide inputs only the block rows' upper parts are multiplied (d = 2048 in
    blocks of 512: 10 of 16 blocks, 62.5% of the FLOPs) and added; the lower blocks are copied once
    when the sum is read, not added for every window (a strided float64 read-modify-write that cost
    as much as the products at d = 4096). Each block product goes straight into `target`, so no
    d x d float32 Gram is ever held (for Llama-3-8B's down_proj that temporary was 0.8 GB).
    """
    flat = x.reshape(-1, x.shape[-1]).float()
    d = flat.shape[1]
    if d <= block:
        target.add_(flat.T @ flat, alpha=alpha)
        return
    for start in range(0, d, block):
        end = min(start + block, d)
        target[start:end, start:].add_(flat[:, start:end].T @ flat[:, start:], alpha=alpha)


def mirror_gram(upper: torch.Tensor, block: int = GRAM_BLOCK) -> torch.Tensor:
    """The symmetric matrix from `add_gram`'s upper block triangle, in place: every block below the
    diagonal blocks becomes the transpose of its mirror image (the same values a per-window mirrored
    add would have summed, since both sides add the same terms in the same order)."""
    d = upper.shape[0]
    for start in range(0, d, block):
        end = min(start + block, d)
        upper[end:, start:end] = upper[start:end, end:].T
    return upper


class TokenSample:
    """A seeded choice of about `tokens` calibration tokens, fixed per (window, position).

    A token is in the sample when a uniform number drawn from a generator seeded with (seed, its
    window's index in the whole calibration set) falls below tokens / total: the choice does not
    depend on batching or on which process holds the window.
    """

    def __init__(self, tokens: int, total_tokens: int, seed: int = 0) -> None:
        self.rate = min(1.0, tokens / max(total_tokens, 1))
        self.seed = seed

    def positions(self, window: int, seqlen: int) -> torch.Tensor:
        """Boolean [seqlen]: which positions of calibration window `window` are sampled."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + window)
        return torch.rand(seqlen, generator=generator) < self.rate


def window_weights(languages: list[str], rule: str, shares: dict[str, float] | None = None) -> torch.Tensor | None:
    """Per calibration window, the weight of its statistics: None for `pooled` (every token counts
    once); `balanced`: every language's windows together weigh the same (w = N / (K N_L) for the N_L
    windows of language L among N windows of K languages); `weighted`: language L weighs shares[L]
    (normalised): w = N p_L / N_L. The weights sum to N, so the Hessian's scale stays that of the data.
    """
    if rule == "pooled":
        return None
    counts = {lang: languages.count(lang) for lang in dict.fromkeys(languages)}
    if rule == "balanced":
        shares = dict.fromkeys(counts, 1.0)
    elif rule != "weighted" or shares is None:
        raise ValueError(f"unknown statistics rule '{rule}' (or weighted without shares)")
    total = sum(shares[lang] for lang in counts)
    n = len(languages)
    return torch.tensor([n * shares[lang] / total / counts[lang] for lang in languages], dtype=torch.float64)


class InputStatistics:
    """Running float64 sums over the calibration inputs X (tokens x d_in) of one input.

    keep_gram=False keeps only the squared column norms (enough for Wanda: d_in instead of d_in^2).
    sample: also keep the inputs of a token sample (`sample_inputs()`, float32), enough to estimate
    the error metrics at a fraction of the full Gram's cost and memory.
    weights: per-window weights of the calibration languages (`window_weights`): a balanced or
    weighted mix is a weighted sum of window Grams, so it needs no extra Gram per language.
    """

    def __init__(
        self,
        d_in: int,
        device: torch.device | str = "cpu",
        keep_gram: bool = True,
        sample: TokenSample | None = None,
        weights: torch.Tensor | None = None,
    ) -> None:
        self.d_in = d_in
        self.weights = weights  # per calibration window (window_weights); None: every window weighs 1
        self.keep_gram = keep_gram
        self._gram: torch.Tensor | None = (
            torch.zeros(d_in, d_in, device=device, dtype=ACCUMULATOR) if keep_gram else None
        )
        self._mirrored = True  # the blocks below the diagonal blocks hold the upper ones' transpose
        self._sq_norms = None if keep_gram else torch.zeros(d_in, device=device, dtype=ACCUMULATOR)
        self.sample = sample
        self._sample_rows: list[torch.Tensor] = []
        self.tokens = 0
        self.samples = 0

    def update(self, x: torch.Tensor, first_window: int = 0) -> None:
        """Add a batch of inputs [batch, seq, d_in] (or [tokens, d_in], one window); the batch's
        windows are `first_window`, `first_window + 1`, ... of the calibration set (for the sample)."""
        windows = x.reshape(-1, *x.shape[-2:]) if x.dim() > 2 else x.unsqueeze(0)
        for offset, window in enumerate(windows):
            self._add_window(window, first_window + offset)
        self.tokens += windows.shape[0] * windows.shape[1]
        self.samples += windows.shape[0]

    def _add_window(self, window: torch.Tensor, index: int) -> None:
        weight = 1.0 if self.weights is None else float(self.weights[index])
        if self._gram is not None:
            add_gram(self._gram, window, alpha=weight)
            self._mirrored = False
        else:
            self._sq_norms.add_(window.float().square().sum(dim=0), alpha=weight)
        if self.sample is not None:
            chosen = self.sample.positions(index, window.shape[0]).to(window.device)
            self._sample_rows.append(window[chosen].float())

    @property
    def gram(self) -> torch.Tensor | None:
        """The float64 Gram sum X^T X (symmetric), or None without it."""
        if self._gram is not None and not self._mirrored:
            mirror_gram(self._gram)
            self._mirrored = True
        return self._gram

    @gram.setter
    def gram(self, value: torch.Tensor | None) -> None:
        self._gram, self._mirrored = value, True

    @property
    def accumulator(self) -> torch.Tensor:
        """The running sum kept, for summing in place over processes: the Gram's upper block triangle
        (the rest is mirrored when `gram` is next read), or the squared norms without it."""
        if self._gram is None:
            return self._sq_norms
        self._mirrored = False  # the caller may add to it
        return self._gram

    def sample_inputs(self) -> torch.Tensor:
        """The sampled tokens' inputs [n, d_in] (float32), in window order."""
        if not self._sample_rows:
            return torch.zeros(0, self.d_in, device=self.accumulator.device)
        return torch.cat(self._sample_rows)

    @property
    def sq_norms(self) -> torch.Tensor:
        """||X_j||^2 summed over all tokens, per input feature j (float32)."""
        return (torch.diagonal(self._gram) if self._gram is not None else self._sq_norms).float()

    def release_gram(self) -> None:
        """Drop the float64 Gram once the solve has its float32 copy: it is the largest thing held."""
        self._gram = None
