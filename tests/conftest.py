"""Shared pytest fixtures. Everything here works offline: no hub downloads."""

from __future__ import annotations

import socket
import string
from pathlib import Path

import pytest

# --- char_tokenizer: a character-level tokenizer with a BOS token, built in memory -----------------

CHAR_SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")  # ids 0..3


def _packaged_characters() -> set[str]:
    """Every character of the packaged text (about 2,000); none when dataset-build is not installed."""
    from lp_prune.data.text import PACKAGED_CODES, packaged_text_dir
    from lp_prune.errors import DataError

    try:
        data = packaged_text_dir()
    except DataError:
        return set()
    chars: set[str] = set()
    for folder in PACKAGED_CODES.values():
        for path in (data / folder).glob("*.txt"):
            chars.update(path.read_text(encoding="utf-8"))
    return chars


def build_char_tokenizer():
    """One token per character: printable ASCII plus all characters of the packaged text.

    Small vocabulary (about 2,000), exact decoding (bytes of decoded text = bytes of the original),
    BOS/EOS/PAD/UNK specials; the tokenizer adds no special tokens by itself.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted((set(string.printable) | _packaged_characters()) - {"\r"})
    vocab = {token: i for i, token in enumerate(CHAR_SPECIAL_TOKENS)}
    vocab.update({char: len(CHAR_SPECIAL_TOKENS) + i for i, char in enumerate(alphabet)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()  # join characters without the spaces WordLevel would insert
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


@pytest.fixture(scope="session")
def char_tokenizer():
    """Character-level PreTrainedTokenizerFast with a BOS token (id 1); see build_char_tokenizer."""
    return build_char_tokenizer()


# --- tiny_model_dir: a tiny random-weight causal LM saved with the char tokenizer -------------------


def save_tiny_model(folder: Path, arch: str = "llama") -> Path:
    """A tiny decoder of `arch` with the char tokenizer's vocabulary, saved as an HF folder."""
    from tiny_models import tiny_model

    tokenizer = build_char_tokenizer()
    model = tiny_model(arch, vocab_size=len(tokenizer), attention="sdpa")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def eval_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model with room for proxy items: they run to ~400 characters, one token each here."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.config.max_position_embeddings = 1024
    folder = tmp_path_factory.mktemp("tiny-eval")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


# --- wanda_runs, wanda_analysis: three pruned runs of the tiny model and `lp-prune analyze` of them --


@pytest.fixture(scope="session")
def wanda_runs(tiny_model_dir, tmp_path_factory) -> Path:
    """Wanda runs of the tiny model calibrated on en, sw and de, without evaluation (a sweep folder)."""
    from lp_prune.cli import main

    root = tmp_path_factory.mktemp("analysis-runs")
    for lang in ("en", "sw", "de"):
        args = [
            "run", "--model.name", str(tiny_model_dir), "--out", str(root / lang), "--prune.method", "wanda",
            "--data.calibration_language", lang, "--data.nsamples", "4", "--data.seqlen", "32",
            "--data.eval_windows", "0", "--eval.perplexity", "false", "--wandb.mode", "disabled", "--wandb.group", "g",
        ]  # fmt: skip
        assert main(args) == 0
    return root


@pytest.fixture(scope="session")
def wanda_analysis(wanda_runs, tmp_path_factory) -> Path:
    """The folder `lp-prune analyze` of wanda_runs wrote (en and sw, no W&B): analysis.json, report, figures."""
    from lp_prune.cli import main

    out = tmp_path_factory.mktemp("analysis")
    args = ["analyze", str(wanda_runs), "--out", str(out), "--languages", "[en, sw]", "--no_wandb"]
    assert main([*args, "--windows", "2", "--seqlen", "24", "--batch_size", "2"]) == 0
    return out


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, tmp_path):
    """Tests never reach W&B servers or write into the checkout."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LP_PRUNE_CACHE", str(Path.home() / ".cache" / "lp_prune"))
    yield
    import wandb

    if wandb.run is not None:  # a test that failed mid-run must not hand its W&B run to the next one
        wandb.finish(exit_code=1)


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt is recorded and refused."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts
