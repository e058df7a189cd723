"""Self-generated calibration text (data.source generated): the model being pruned writes it.

After the model loads (the pipeline calls this; PruningDataModule.setup() leaves the calibration
windows to it):

    windows, record = generate_calibration(model, tokenizer, "sw", nsamples=32, seqlen=256, seed=0)

1. The model continues short seed prompts written in the language (SEED_PROMPTS_FILE, eight per
   language, used in turn) by sampling: temperature, top_k and nucleus top_p from GenerationConfig,
   batched `model.generate` with the KV cache on. EOS, pad, BOS and other special tokens are never
   sampled, so every sequence gives exactly one window: BOS + seqlen - 1 generated tokens (the
   prompt is not part of the window).
2. Seeded: generation runs in a forked RNG seeded with `seed`, so the same seed (and model, prompts,
   settings, batch size) gives the same token ids, and the caller's RNG state is left as it was.
3. A window is dropped when its decoded text fails the language check (lp_prune.data.language_check:
   script share, stopwords; approximate), or when its perplexity under the model (of its tokens given
   the prompt, read off the logits `generate` computes anyway: no extra forward) is extreme: above
   max_perplexity, or its log perplexity outside Tukey's fences (Q1 - k IQR, Q3 + k IQR, k =
   perplexity_fence) of all language-passing windows so far (too high: gibberish; too low:
   repetition loops). More batches are generated until nsamples windows pass, at most
   tries x nsamples windows in all; then a DataError says why they failed.
4. `record` (JSON-ready) holds the settings and every generated window: prompt, text, perplexity,
   kept or dropped with the reason. `save_record` writes it into the run directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from lp_prune.config import GenerationConfig
from lp_prune.data.language_check import check_text_language
from lp_prune.data.windows import TokenWindows, bos_ids, make_windows, text_tokens_per_window
from lp_prune.errors import DataError
from lp_prune.languages import check_language_code
from lp_prune.storage.cache_lock import cache_dir, compute_once, write_to_cache
from lp_prune.storage.files import atomic_write_bytes, read_json, write_json

log = logging.getLogger(__name__)

SEED_PROMPTS_FILE = Path(__file__).parent / "seed_prompts.json"
GENERATED_RECORD_FILE = "calibration_generated.json"  # in the run directory


@cache
def _all_prompts() -> dict[str, list[str]]:
    return json.loads(SEED_PROMPTS_FILE.read_text(encoding="utf-8"))


def seed_prompts(lang: str) -> list[str]:
    """The shipped seed prompts of a language."""
    check_language_code(lang, "seed prompts")
    return list(_all_prompts()[lang])


def generate_calibration(
    model: torch.nn.Module,
    tokenizer: Any,
    language: str,
    nsamples: int,
    seqlen: int,
    seed: int,
    options: GenerationConfig | None = None,
    prompts: Sequence[str] | None = None,
) -> tuple[TokenWindows, dict[str, Any]]:
    """`nsamples` windows of `seqlen` tokens the model wrote in `language`, and the record of how."""
    options = options or GenerationConfig()
    prompts = list(prompts or seed_prompts(language))
    n_text = text_tokens_per_window(tokenizer, seqlen)
    budget = math.ceil(options.tries * nsamples)
    start = time.perf_counter()
    rows: list[torch.Tensor] = []
    entries: list[dict[str, Any]] = []
    with _seeded(seed, _device(model)):
        while _passing(entries) < nsamples and len(entries) < budget:
            # After the first batch, only about as many as are still missing (plus half for drops).
            missing = math.ceil(1.5 * (nsamples - _passing(entries))) if entries else nsamples
            size = min(options.batch_size, budget - len(entries), missing)
            batch = [prompts[(len(entries) + i) % len(prompts)] for i in range(size)]
            generated, nll = _generate(model, tokenizer, batch, n_text, options)
            texts = tokenizer.batch_decode(generated.tolist(), skip_special_tokens=True)
            for prompt, ids, text, nll_sum in zip(batch, generated, texts, nll.tolist(), strict=True):
                rows.append(ids)
                entries.append(judge_language(len(entries), prompt, text, language, options))
                entries[-1]["perplexity"] = math.exp(nll_sum / n_text)
            judge_perplexity(entries, options)
            log.info(
                "generated calibration '%s': %d windows, %d pass, %.0f s",
                language,
                len(entries),
                _passing(entries),
                time.perf_counter() - start,
            )
    kept = [i for i, entry in enumerate(entries) if entry["reason"] == "kept"][:nsamples]
    for i, entry in enumerate(entries):
        if entry["reason"] == "kept" and i not in kept:
            entry["reason"] = "not needed"
    record = _record(language, nsamples, seqlen, seed, options, entries, time.perf_counter() - start)
    if len(kept) < nsamples:
        reasons = Counter(entry["reason"].split(":")[0] for entry in entries if entry["reason"] != "kept")
        raise DataError(
            f"generated calibration for '{language}': only {len(kept)} of {nsamples} windows passed after "
            f"{len(entries)} generated (dropped: {', '.join(f'{n} {r}' for r, n in reasons.items())}); raise "
            "data.generation.tries, loosen data.generation.min_script_share, or lower data.nsamples"
        )
    windows = make_windows(torch.stack([rows[i] for i in kept]), tokenizer)
    return windows, record


def generate_calibration_mix(
    model: torch.nn.Module,
    tokenizer: Any,
    counts: dict[str, int],
    seqlen: int,
    seed: int,
    options: GenerationConfig | None = None,
) -> tuple[TokenWindows, list[str], dict[str, Any]]:
    """generate_calibration for every language of a mix (CalibrationRecipe.counts), in the mix's order:
    the windows, the language of each, and {"languages": {lang: record}}."""
    parts, records = [], {}
    for lang, n in counts.items():
        windows, records[lang] = generate_calibration(model, tokenizer, lang, n, seqlen, seed, options)
        parts.append(windows)
    languages = [lang for lang, part in zip(counts, parts, strict=True) for _ in range(len(part))]
    windows = TokenWindows(torch.cat([p.ids for p in parts]), torch.cat([p.n_bytes for p in parts]))
    return windows, languages, {"languages": records}


GENERATION_VERSION = 1  # bump when what a seed produces changes: cached generations are keyed by it


def generation_cache_key(
    model_config: Any, device: torch.device, counts: dict[str, int], seqlen: int, seed: int, options: GenerationConfig
) -> str:
    """Identifies a generation: the model (and its local files' mtimes), device kind, mix, sizes, seed,
    settings, prompts and library versions."""
    import transformers

    parts = [GENERATION_VERSION, model_config.name, model_config.dtype, model_config.revision, device.type]
    parts += [counts, seqlen, seed, asdict(options), _all_prompts(), torch.__version__, transformers.__version__]
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode())
    folder = Path(model_config.name)
    if folder.is_dir():
        for weights in sorted(folder.glob("*.safetensors")):
            digest.update(f"{weights.name}:{weights.stat().st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def cached_generate_calibration_mix(
    model_config: Any,
    model: torch.nn.Module,
    tokenizer: Any,
    counts: dict[str, int],
    seqlen: int,
    seed: int,
    options: GenerationConfig | None = None,
    write: bool = True,
) -> tuple[TokenWindows, list[str], dict[str, Any]]:
    """generate_calibration_mix, computed once per model, mix, sizes, seed and settings.

    A sweep prunes the same model with several methods on the same generated text (same seed, same
    text): every run after the first reads the windows back from the cache (LP_PRUNE_CACHE), and runs
    started together wait for the first one's (storage.cache_lock). The record says where they came
    from ("cache")."""
    options = options or GenerationConfig()
    key = generation_cache_key(model_config, _device(model), counts, seqlen, seed, options)
    folder = cache_dir() / "generated_calibration"
    tensors, record_path = folder / f"{key}.pt", folder / f"{key}.json"

    def read() -> tuple[TokenWindows, list[str], dict[str, Any]] | None:
        if not (tensors.is_file() and record_path.is_file()):  # the record is written last
            return None
        saved = torch.load(tensors, weights_only=True)
        record = {**read_json(record_path), "cache": str(tensors)}
        return TokenWindows(saved["ids"], saved["n_bytes"]), list(record["window_languages"]), record

    def generate() -> tuple[TokenWindows, list[str], dict[str, Any]]:
        windows, languages, record = generate_calibration_mix(model, tokenizer, counts, seqlen, seed, options)
        return windows, languages, {**record, "window_languages": languages, "cache": None}

    def store(made: tuple[TokenWindows, list[str], dict[str, Any]]) -> None:
        _write_cache(made[0], made[2], tensors, record_path)

    # data parallel: rank 0 writes (each rank generates the same text on its own: no collective work)
    return compute_once(tensors, read, generate, store if write else None, "generated calibration")


def _write_cache(windows: TokenWindows, record: dict[str, Any], tensors: Path, record_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"ids": windows.ids, "n_bytes": windows.n_bytes}, buffer)

    def write() -> None:
        atomic_write_bytes(tensors, buffer.getvalue())
        write_json(record_path, record)

    write_to_cache("generated calibration", tensors.parent, write)


def save_record(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write the generation record (texts, prompts, reasons) into the run directory."""

    path = Path(run_dir) / GENERATED_RECORD_FILE
    write_json(path, record)
    return path


# --- generation -------------------------------------------------------------------------------------


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Fork the RNG of the CPU (and of the model's CUDA device), seed it, restore it on exit."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class _TokenLogProbs(LogitsProcessor):
    """Sums the log-probability of each sampled token under the model, from the logits `generate`
    computes anyway: it sees them before temperature, top-k and top-p (HF runs custom processors
    before the sampling warpers), keeps the last step's log-softmax, and reads off the token chosen
    from it. Then it bars the `suppress` tokens from being sampled (after the log-softmax, so the
    perplexity is the model's own)."""

    def __init__(self, suppress: Sequence[int]) -> None:
        self.suppress = torch.tensor(list(suppress), dtype=torch.long)
        self.previous: torch.Tensor | None = None
        self.total: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.previous is not None:
            self.add(input_ids[:, -1])
        self.previous = torch.log_softmax(scores.float(), dim=-1)
        return scores.index_fill(1, self.suppress.to(scores.device), -math.inf)

    def add(self, tokens: torch.Tensor) -> None:
        assert self.previous is not None
        chosen = self.previous.gather(1, tokens[:, None].to(self.previous.device)).squeeze(1)
        self.total = chosen if self.total is None else self.total + chosen


def _generate(
    model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], n_new: int, options: GenerationConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """[len(prompts), n_new] sampled continuation ids (prompts left-padded, BOS first) and the summed
    NLL of each row's tokens given its prompt."""
    encoded = [bos_ids(tokenizer) + ids for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(map(len, encoded))
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], dtype=torch.long)
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], dtype=torch.long)
    device = _device(model)
    # No EOS, pad, BOS or markup token inside a window: every sequence fills one window.
    log_probs = _TokenLogProbs(sorted({*tokenizer.all_special_ids, *_eos_ids(model, tokenizer)}))
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            do_sample=True,
            temperature=options.temperature,
            top_p=options.top_p,
            top_k=options.top_k,  # 0: none (HF applies temperature, then top-k, then top-p)
            max_new_tokens=n_new,
            pad_token_id=pad,
            use_cache=True,  # calibration turns the model's use_cache off; generation needs the KV cache
            logits_processor=LogitsProcessorList([log_probs]),
        )
    log_probs.add(output[:, -1])  # the last token: no later step read it off
    assert log_probs.total is not None
    return output[:, width:].cpu(), -log_probs.total.double().cpu()


def _eos_ids(model: torch.nn.Module, tokenizer: Any) -> list[int]:
    """Every EOS id of the tokenizer and the model's generation config (Gemma has two)."""
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = config_eos if isinstance(config_eos, list) else [config_eos]
    return [int(i) for i in [*ids, tokenizer.eos_token_id] if i is not None]


# --- filtering --------------------------------------------------------------------------------------


def _passing(entries: list[dict[str, Any]]) -> int:
    return sum(entry["reason"] == "kept" for entry in entries)


def judge_language(index: int, prompt: str, text: str, language: str, options: GenerationConfig) -> dict[str, Any]:
    """A record entry for a generated window; reason "language: ..." when its text fails the language check."""
    entry: dict[str, Any] = {"index": index, "prompt": prompt, "text": text, "perplexity": None, "reason": "kept"}
    if options.check_language:
        check = check_text_language(text, language, options.min_script_share)
        entry["script_share"] = round(check.script_share, 4)
        if not check.passed:
            entry["reason"] = f"language: {check.reason}"
    return entry


def perplexity_fences(log_perplexities: Sequence[float], k: float) -> tuple[float, float]:
    """Tukey's fences (Q1 - k IQR, Q3 + k IQR) of log perplexities; (-inf, inf) for k = 0 or < 4 values."""
    if k == 0 or len(log_perplexities) < 4:
        return -math.inf, math.inf
    q1, q3 = torch.quantile(
        torch.tensor(log_perplexities, dtype=torch.float64), torch.tensor([0.25, 0.75], dtype=torch.float64)
    ).tolist()
    return q1 - k * (q3 - q1), q3 + k * (q3 - q1)


def judge_perplexity(entries: list[dict[str, Any]], options: GenerationConfig) -> None:
    """(Re)judge every language-passing window against the fences of all of them and max_perplexity."""
    candidates = [e for e in entries if not e["reason"].startswith("language")]
    low, high = perplexity_fences([math.log(e["perplexity"]) for e in candidates], options.perplexity_fence)
    for entry in candidates:
        log_ppl = math.log(entry["perplexity"])
        if entry["perplexity"] > options.max_perplexity:
            entry["reason"] = f"perplexity: {entry['perplexity']:.1f} above max_perplexity {options.max_perplexity:g}"
        elif log_ppl > high:
            entry["reason"] = f"perplexity: {entry['perplexity']:.1f} above the upper fence {math.exp(high):.1f}"
        elif log_ppl < low:
            entry["reason"] = f"perplexity: {entry['perplexity']:.2f} below the lower fence {math.exp(low):.2f}"
        else:
            entry["reason"] = "kept"


def _record(
    language: str, nsamples: int, seqlen: int, seed: int, options: GenerationConfig, entries: list, seconds: float
) -> dict[str, Any]:
    return {
        "language": language,
        "nsamples": nsamples,
        "seqlen": seqlen,
        "seed": seed,
        "settings": {**asdict(options), "window": "BOS + generated tokens (prompt not included)"},
        "generated": len(entries),
        "kept": sum(entry["reason"] == "kept" for entry in entries),
        "seconds": round(seconds, 2),
        "windows": entries,
    }
