"""Data and weights that once gave a result without a word: token ids past the model's vocabulary, and
an infinite weight outside the pruned Linears. Each is one line on stderr and exit 2."""

import shutil
from pathlib import Path

import pytest
import torch

from lp_prune.cli import main

SMALL = [
    *("--data.nsamples", "4", "--data.seqlen", "32"),
    *("--data.eval_windows", "1", "--data.eval_seqlen", "32", "--data.eval_languages", "[en]"),
    *("--wandb.mode", "disabled"),
]


def refusal(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in err)
    errors = [line for line in err if line.startswith("lp-prune:")]
    assert len(errors) == 1 and errors[0].startswith("lp-prune: error:"), err
    return errors[0]


@pytest.fixture(scope="module")
def small_vocab_model(tmp_path_factory) -> Path:
    """A tiny model whose embedding has 1,000 rows, saved with the 2,061-token character tokenizer."""
    from conftest import build_char_tokenizer
    from tiny_models import tiny_model

    folder = tmp_path_factory.mktemp("small-vocab")
    tiny_model("llama", vocab_size=1000, attention="sdpa").save_pretrained(folder)
    build_char_tokenizer().save_pretrained(folder)
    return folder


def test_token_ids_past_the_models_vocabulary_are_refused(small_vocab_model, tmp_path, capsys):
    token_file, out = tmp_path / "ids.pt", tmp_path / "out"
    torch.save(torch.full((4, 32), 1500, dtype=torch.long), token_file)  # the tokenizer has it; the model not
    argv = ["run", "--model.name", str(small_vocab_model), "--out", str(out), *SMALL]
    argv += ["--data.source", "tokens", "--data.token_file", str(token_file), "--prune.method", "magnitude"]
    err = refusal(capsys, argv)
    assert "calibration windows (data.source tokens) hold token id 1500, outside the model's vocabulary of 1000" in err
    assert not out.exists()


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused(small_vocab_model, tmp_path, capsys):
    out = tmp_path / "out"
    chinese = ["--data.calibration_language", "zh", "--data.eval_languages", "[zh]"]  # characters past id 1000
    err = refusal(capsys, ["run", "--model.name", str(small_vocab_model), "--out", str(out), *SMALL, *chinese])
    assert "calibration windows (data.source packaged) hold token id" in err
    assert "outside the model's vocabulary of 1000 (ids 0 to 999)" in err
    assert not out.exists()


@pytest.mark.parametrize("method", ["magnitude", "sparsegpt"])
def test_an_infinite_embedding_weight_stops_the_run(method, tiny_model_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    weights = load_file(folder / "model.safetensors")
    weights["model.embed_tokens.weight"][7, 3] = float("inf")  # a row the calibration text never reads
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    out = tmp_path / "out"
    err = refusal(capsys, ["run", "--model.name", str(folder), "--out", str(out), *SMALL, "--prune.method", method])
    assert "model.embed_tokens.weight: the weights hold NaN or inf" in err
    assert not (out / "summary.json").exists()


def test_a_token_file_with_pickled_objects_is_one_short_line(tiny_model_dir, tmp_path, capsys):
    token_file, out = tmp_path / "ids.pt", tmp_path / "out"
    torch.save({"ids": torch.zeros(4, 32, dtype=torch.long), "made_in": Path(".")}, token_file)
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL]
    err = refusal(capsys, [*argv, "--data.source", "tokens", "--data.token_file", str(token_file)])
    assert f"token file {token_file} holds pickled Python objects (pathlib.PosixPath), which are not loaded" in err
    assert "\x1b[" not in err and "trust" not in err and len(err) < 300
    assert not out.exists()


def test_a_gigabyte_of_nul_bytes_as_calibration_text_is_refused_at_its_first_chunk(tmp_path):
    import resource

    from lp_prune.data.text import file_documents
    from lp_prune.errors import DataError

    path = tmp_path / "nul.txt"
    with path.open("wb") as handle:
        handle.truncate(2**30)  # sparse: no disk used
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="holds NUL bytes at byte 0: not text"):
        file_documents(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: far below the file


def test_text_is_read_in_chunks_up_to_a_limit(tmp_path, monkeypatch, caplog):
    from lp_prune.data import text

    monkeypatch.setattr(text, "TEXT_CHUNK_BYTES", 7)  # chunks that cut the two-byte characters apart
    path = tmp_path / "t.txt"
    path.write_text("ñandú " * 50, encoding="utf-8")
    assert text.file_documents(path) == [("ñandú " * 50).strip()]
    monkeypatch.setattr(text, "MAX_TEXT_BYTES", 40)
    (doc,) = text.file_documents(path)
    assert ("ñandú " * 50).startswith(doc) and 30 < len(doc.encode()) <= 40
    assert "only its first" in caplog.text


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_a_reference_file_of_the_wrong_shape_is_one_line_and_nothing_else(tmp_path, capfd, kind):
    import pandas as pd

    from lp_prune.data.reference import load_reference_rows, reference_set, reference_text
    from lp_prune.errors import DataError

    path = tmp_path / f"bad.{kind}"
    if kind == "parquet":
        pd.DataFrame({"foo": ["a b c"] * 3}).to_parquet(path)  # no text column
    else:
        path.write_text('{"text": "a"}\n{"text": [1, 2]}\nnot json\n')  # a broken row
    ref = reference_set("wikitext2")
    with pytest.raises(DataError) as error:
        reference_text(ref, load_reference_rows(ref, path), str(path))
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no progress bar, no logged parse error beside the refusal
    assert len(str(error.value).splitlines()) == 1 and "wikitext2" in str(error.value)


def test_choices_longer_than_a_short_context_model_window_are_one_line(tiny_model_dir, tmp_path, capsys):
    # the tiny model's window is 128 tokens; a proxy choice is a sentence of one token per character
    args = ["run", "--model.name", str(tiny_model_dir), "--out", str(tmp_path / "run"), "--data.nsamples", "4",
            "--data.seqlen", "32", "--data.batch_size", "2", "--data.eval_windows", "1", "--data.eval_seqlen", "32",
            "--eval.tasks", "proxy", "--eval.limit", "3", "--eval.languages", "[en]", "--wandb.mode", "disabled",
            "--eval.dense_baseline", "false"]  # fmt: skip
    assert main(args) == 2
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()  # progress bars redraw with \r
    errors = [line for line in lines if line.startswith("lp-prune: error:")]
    assert len(errors) == 1 and "longer than the model's window of 128" in errors[0]
