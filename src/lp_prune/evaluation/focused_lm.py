"""lm-eval's HFLM, with vocabulary logits computed only where continuation tokens are scored.

A log-likelihood request scores the continuation tokens after a context; HFLM computes the lm_head
at every position of context and continuation. With Gemma's 262k-token vocabulary the lm_head
costs about three times the rest of a 270M model per position, so most of that work is thrown
away (all of it but one position for a one-letter answer after a Belebele passage). This subclass
asks the model for the last k positions only (`logits_to_keep`, every transformers causal LM has
it), with k covering the scored positions of every row of a batch. Same numbers, less work.

Generation and everything else is HFLM's own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

Request = tuple[tuple[str, str] | None, list[int], list[int]]  # (strings or None, context ids, continuation ids)


class FocusedHFLM(HFLM):
    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False, override_bs: int | None = None
    ) -> list[tuple[float, bool]]:
        if self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        batch_size = override_bs or (self.batch_size if isinstance(self.batch_size, int) else 1)
        # Longest first, as HFLM does: rows of a batch have similar lengths, so little padding and a
        # small k, and running out of memory happens at once if it happens at all.
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][1]) - len(requests[i][2]))
        scores: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        progress = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Log-likelihoods")
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            for i, score in zip(batch, self._score([requests[i] for i in batch]), strict=True):
                scores[i] = score
                if requests[i][0] is not None:  # rolling log-likelihood windows carry no cache key
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], score)
            progress.update(len(batch))
        progress.close()
        return scores

    def _score(self, batch: Sequence[Request]) -> list[tuple[float, bool]]:
        """(sum of continuation log-probs, whether greedy decoding reproduces it) for each request."""
        # As HFLM: keep the last max_length + 1 tokens; the last one is predicted, never input.
        sequences = [(context + continuation)[-(self.max_length + 1) :] for _, context, continuation in batch]
        lengths = [len(continuation) for _, _, continuation in batch]
        width = max(len(seq) for seq in sequences) - 1
        inputs = torch.zeros(len(batch), width, dtype=torch.long)  # right-padded: causal rows ignore it
        for row, seq in enumerate(sequences):
            inputs[row, : len(seq) - 1] = torch.tensor(seq[:-1])
        # Position p predicts token p + 1: a row's continuation is predicted at len - 1 - n ... len - 2.
        first = min(len(seq) - 1 - n for seq, n in zip(sequences, lengths, strict=True))
        logits = self._last_logits(inputs.to(self.device), width - first)
        log_probs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype or torch.float32)
        results = []
        for row, (seq, n) in enumerate(zip(sequences, lengths, strict=True)):
            start = len(seq) - 1 - n - first
            row_log_probs = log_probs[row, start : start + n]
            targets = torch.tensor(seq[-n:], device=row_log_probs.device)
            total = row_log_probs.gather(-1, targets[:, None]).sum()
            results.append((float(total), bool((row_log_probs.argmax(-1) == targets).all())))
        return results

    def _last_logits(self, inputs: torch.Tensor, keep: int) -> torch.Tensor:
        with torch.no_grad():
            try:
                return self.model(inputs, logits_to_keep=keep).logits
            except TypeError:  # a model without logits_to_keep (old remote code): all, then the tail
                return self.model(inputs).logits[:, -keep:]
