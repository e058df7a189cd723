"""lm-eval's HFLM, scoring log-likelihoods with the least work: contexts once, the head only where scored.

A log-likelihood request scores the continuation tokens after a context; HFLM runs every request
as its own row (context + continuation) and computes the lm_head at every position. With Gemma's
262k-token vocabulary the lm_head costs about three times the rest of a 270M model per position,
and the choices of a multiple-choice item repeat the same context. Here:

- requests sharing a context (the choices of an item) are packed into one row (shared_context.py):
  the context is computed once, every choice sees exactly what it sees in its own row;
- the lm_head runs only at the scored positions, fused with the log-softmax (target_log_probs);
- requests that cannot be packed the same way (a truncated request, one longer than a sliding
  attention window, an attention kernel that takes no custom mask) run one row each, with the
  logits of the last positions only (`logits_to_keep`).

The first packed batch is checked against the one-row-per-request scores: a model that does not
honour the packed rows' attention mask or positions falls back, with a warning. Same numbers as
HFLM, less work. Generation and everything else is HFLM's own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from lp_prune.errors import DataError
from lp_prune.evaluation.shared_context import ChoiceItem, PackedBatch, batches, pack
from lp_prune.metrics.language_modeling import target_log_probs
from lp_prune.models.layers import decoder_body, head_logits, linear_head

log = logging.getLogger(__name__)

Request = tuple[tuple[str, str] | None, list[int], list[int]]  # (strings or None, context ids, continuation ids)
Score = tuple[float, bool]

PACKED_BATCH_TOKENS = 4096  # padded tokens per packed batch: big enough for the matmul rate, small masks
MASKABLE_ATTENTION = ("sdpa", "eager")  # kernels that take a custom 4-D additive mask
CHECK_TOLERANCE = 1e-3  # |packed - one row each| of the first item's scores, nats


class FocusedHFLM(HFLM):
    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False, override_bs: int | None = None
    ) -> list[Score]:
        if self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        scores: list[Score | None] = [None] * len(requests)
        progress = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Log-likelihoods")
        packed, single = self._split_packable(requests)
        for batch in batches(packed, PACKED_BATCH_TOKENS):
            self._store(requests, self._score_packed(requests, pack(batch, self._pad_id())), scores, progress)
        batch_size = override_bs or (self.batch_size if isinstance(self.batch_size, int) else 1)
        # Longest first, as HFLM does: rows of a batch have similar lengths, so little padding and a
        # small k, and running out of memory happens at once if it happens at all.
        single.sort(key=lambda i: -len(requests[i][1]) - len(requests[i][2]))
        for start in range(0, len(single), batch_size):
            batch = single[start : start + batch_size]
            self._store(
                requests, dict(zip(batch, self._score([requests[i] for i in batch]), strict=True)), scores, progress
            )
        progress.close()
        return scores  # type: ignore[return-value]  # every request was scored once

    def _store(
        self, requests: list[Request], new: dict[int, Score], scores: list[Score | None], progress: tqdm
    ) -> None:
        for i, score in new.items():
            scores[i] = score
            if requests[i][0] is not None:  # rolling log-likelihood windows carry no cache key
                self.cache_hook.add_partial("loglikelihood", requests[i][0], score)
        progress.update(len(new))

    def _split_packable(self, requests: list[Request]) -> tuple[list[ChoiceItem], list[int]]:
        """Items of requests sharing a context that packed rows score exactly, and the other requests."""
        if not self._packing_possible():
            return [], list(range(len(requests)))
        by_context: dict[tuple[int, ...], list[int]] = {}
        for i, (_, context, _) in enumerate(requests):
            by_context.setdefault(tuple(context), []).append(i)
        window = getattr(self.model.config, "sliding_window", None)
        items, single = [], []
        for context, members in by_context.items():
            item = ChoiceItem(context, tuple(tuple(requests[i][2]) for i in members), tuple(members))
            fits = item.longest_request <= self.max_length and (window is None or item.longest_request <= window)
            if context and all(item.continuations) and fits:
                items.append(item)
            else:  # truncated (HFLM keeps the last max_length + 1 tokens) or wider than the window
                single += members
        return items, single

    def _packing_possible(self) -> bool:
        if getattr(self, "_packing_ok", None) is None:
            self._packing_ok = getattr(self.model.config, "_attn_implementation", None) in MASKABLE_ATTENTION
        return self._packing_ok

    def _pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return int(pad) if pad is not None else 0

    def _score_packed(self, requests: list[Request], batch: PackedBatch) -> dict[int, Score]:
        scores = self._packed_scores(batch)
        if not getattr(self, "_packing_checked", False):
            self._packing_checked = True
            if not self._agrees_with_single_rows(requests, batch, scores):
                self._packing_ok = False
                log.warning(
                    "%s: packed multiple-choice rows disagree with one row per request; scoring one row each",
                    type(self.model).__name__,
                )
                return dict(zip(batch.requests, self._score([requests[i] for i in batch.requests]), strict=True))
        return scores

    def _agrees_with_single_rows(self, requests: list[Request], batch: PackedBatch, scores: dict[int, Score]) -> bool:
        first_row = batch.target_request[batch.score_rows == 0].unique().tolist()
        check = [batch.requests[i] for i in first_row]
        singles = self._score([requests[i] for i in check])
        return all(
            math.isclose(scores[i][0], single[0], rel_tol=CHECK_TOLERANCE, abs_tol=CHECK_TOLERANCE)
            for i, single in zip(check, singles, strict=True)
        )

    def _packed_scores(self, batch: PackedBatch) -> dict[int, Score]:
        device = self.device
        dtype = next(self.model.parameters()).dtype
        with torch.no_grad():
            hidden = decoder_body(self.model)(
                input_ids=batch.input_ids.to(device),
                attention_mask=batch.additive_mask(dtype).to(device),
                position_ids=batch.position_ids.to(device),
                use_cache=False,
            ).last_hidden_state
            states = hidden[batch.score_rows.to(device), batch.score_positions.to(device)]
            targets = batch.targets.to(device)
            head = linear_head(self.model)
            if head is not None:
                log_probs, greedy = target_log_probs(states, targets, *head)
            else:
                logits = head_logits(self.model, states).float()
                log_probs = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
                greedy = logits.argmax(-1) == targets
        owner = batch.target_request.to(device)
        totals = torch.zeros(len(batch.requests), dtype=torch.float64, device=device)
        totals.index_add_(0, owner, log_probs.double())
        misses = torch.zeros(len(batch.requests), dtype=torch.long, device=device)
        misses.index_add_(0, owner, (~greedy).long())
        return {
            request: (float(total), not bool(miss))
            for request, total, miss in zip(batch.requests, totals.tolist(), misses.tolist(), strict=True)
        }

    def _score(self, batch: Sequence[Request]) -> list[tuple[float, bool]]:
        """(sum of continuation log-probs, whether greedy decoding reproduces it) for each request."""
        # As HFLM: keep the last max_length + 1 tokens; the last one is predicted, never input. A
        # continuation longer than that cannot be scored whole (HFLM asserts): refused in one line.
        longest = max(len(continuation) for _, _, continuation in batch)
        if longest > self.max_length:
            raise DataError(
                f"a downstream choice is {longest} tokens, longer than the model's window of {self.max_length}: "
                "it cannot be scored whole (lm-eval refuses it too); evaluate tasks with shorter choices "
                "(eval.tasks) or a model with a longer context"
            )
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
