"""The field's English perplexity sets (WikiText-2, C4), read offline from local files with the Hub's
schema through `datasets`, cut as SparseGPT/Wanda cut them, evaluated beside the languages."""

from __future__ import annotations

import gzip
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from lp_prune.cli import main
from lp_prune.config import DataConfig
from lp_prune.data import PruningDataModule
from lp_prune.data.reference import REFERENCE_RECIPES, load_reference_windows
from lp_prune.errors import ConfigError, DataError
from lp_prune.evaluation.perplexity import evaluate_perplexity
from wandb_offline import closed_log, find_offline_runs, read_summary

# WikiText-2 raw rows as the Hub's parquet holds them: headings, blank rows, paragraphs with a newline.
WIKI_ROWS = [
    "",
    " = Valkyria Chronicles III = \n",
    "",
    " Senjou no Valkyria 3 : Unrecorded Chronicles is a tactical role @-@ playing video game . \n",
    "",
    " = = Gameplay = = \n",
    "",
] + [f" Paragraph {i} tells of the battle of the {i}th squad near the river , in {1930 + i} . \n" for i in range(40)]

# C4 English validation rows: text, timestamp, url (the Hub's json.gz lines). 1200 rows, so that the
# field's cut at 1100 documents shows: the rows after it say "LATE".
C4_ROWS = [
    {
        "text": f"Doc {i} says hello." if i < 1100 else f"LATE {i} must not be read.",
        "timestamp": f"2019-04-{1 + i % 28:02d}T12:00:00Z",
        "url": f"https://example.org/{i}",
    }
    for i in range(1200)
]


@pytest.fixture
def wikitext_parquet(tmp_path):
    """A local test-00000-of-00001.parquet with the Hub file's one column, `text`."""
    import datasets

    path = tmp_path / "wikitext-2-raw-v1" / "test-00000-of-00001.parquet"
    path.parent.mkdir()
    datasets.Dataset.from_dict({"text": WIKI_ROWS}).to_parquet(str(path))
    return path


@pytest.fixture
def c4_json_gz(tmp_path):
    """A local en/c4-validation.00000-of-00008.json.gz: one JSON object a line, as the Hub's file."""
    path = tmp_path / "en" / "c4-validation.00000-of-00008.json.gz"
    write_json_gz(path, C4_ROWS)
    return path


def stream_of(text: str, tokenizer) -> torch.Tensor:
    """The test's own count: the whole text tokenized once, as the field does."""
    return torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)


def test_wikitext2_windows_are_consecutive_and_cover_the_stream(wikitext_parquet, char_tokenizer):
    seqlen = 32
    windows = load_reference_windows("wikitext2", char_tokenizer, seqlen, wikitext_parquet)
    stream = stream_of("\n\n".join(WIKI_ROWS), char_tokenizer)
    n = stream.numel() // seqlen
    assert n > 10 and windows.ids.shape == (n, seqlen)
    # non-overlapping, back to back, from the first token; only the last partial window is dropped
    assert torch.equal(windows.ids.flatten(), stream[: n * seqlen])
    assert stream.numel() - windows.ids.numel() < seqlen
    assert windows.n_bytes.tolist() == [
        len(char_tokenizer.decode(row[1:].tolist()).encode("utf-8")) for row in windows.ids
    ]


def test_c4_en_keeps_the_first_1100_documents(c4_json_gz, char_tokenizer):
    seqlen = 100  # 1100 short documents hold fewer than 256 x 100 tokens: all their windows are read
    windows = load_reference_windows("c4_en", char_tokenizer, seqlen, c4_json_gz)
    stream = stream_of(" ".join(row["text"] for row in C4_ROWS[:1100]), char_tokenizer)
    n = stream.numel() // seqlen
    assert n < 256 and windows.ids.shape == (n, seqlen)
    assert torch.equal(windows.ids.flatten(), stream[: n * seqlen])
    assert "LATE" not in char_tokenizer.decode(windows.ids.flatten().tolist())


def test_c4_en_keeps_the_first_256_windows(c4_json_gz, char_tokenizer):
    seqlen = 8
    windows = load_reference_windows("c4_en", char_tokenizer, seqlen, c4_json_gz)
    stream = stream_of(" ".join(row["text"] for row in C4_ROWS[:1100]), char_tokenizer)
    assert stream.numel() > 256 * seqlen
    assert windows.ids.shape == (256, seqlen)
    assert torch.equal(windows.ids.flatten(), stream[: 256 * seqlen])


def test_hub_arguments_are_the_fields(monkeypatch, char_tokenizer):
    """Without a local copy the sets are read from the Hub with the field's arguments."""
    import datasets

    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        columns = {"text": ["a b c d e f g h i j"] * 4}
        if path == "allenai/c4":
            columns.update(timestamp=["2019-04-01T00:00:00Z"] * 4, url=["https://example.org"] * 4)
        return datasets.Dataset.from_dict(columns)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    load_reference_windows("wikitext2", char_tokenizer, 4)
    load_reference_windows("c4_en", char_tokenizer, 4)
    assert calls == [
        ("Salesforce/wikitext", "wikitext-2-raw-v1", {"data_files": None, "split": "test"}),
        (
            "allenai/c4",
            None,
            {"data_files": {"validation": "en/c4-validation.00000-of-00008.json.gz"}, "split": "validation"},
        ),
    ]
    assert REFERENCE_RECIPES["c4_en"].documents == 1100 and REFERENCE_RECIPES["c4_en"].windows == 256


def test_unreachable_hub_is_one_line_naming_the_local_override(monkeypatch, char_tokenizer):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'Salesforce/wikitext' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataError) as err:
        load_reference_windows("wikitext2", char_tokenizer, 4)
    assert len(str(err.value).splitlines()) == 1 and "data.reference_files.wikitext2" in str(err.value)


def test_a_file_without_the_text_column_is_refused(tmp_path, char_tokenizer):
    import datasets

    path = tmp_path / "wrong.parquet"
    datasets.Dataset.from_dict({"content": ["x"]}).to_parquet(str(path))
    with pytest.raises(DataError, match="expected the Hub file's text"):
        load_reference_windows("wikitext2", char_tokenizer, 4, path)


def test_unknown_reference_set_is_refused():
    with pytest.raises(ConfigError, match="unknown set 'wikitext3'"):
        DataConfig(reference_sets=["wikitext3"]).validate()


def test_reference_sets_are_off_by_default():
    assert DataConfig().reference_sets == []


def independent_perplexity(model, windows: torch.Tensor) -> float:
    """exp(mean NLL) over every predicted token of every window, from the model's own logits."""
    with torch.no_grad():
        logits = model(input_ids=windows, use_cache=False).logits.double()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -logprobs.gather(-1, windows[:, 1:, None]).squeeze(-1)
    return math.exp(nll.mean().item())


def test_perplexity_of_a_reference_set_equals_an_independent_computation(
    tiny_model_dir, wikitext_parquet, c4_json_gz, char_tokenizer
):
    config = DataConfig(
        nsamples=1,
        seqlen=8,
        eval_windows=1,
        eval_seqlen=16,
        eval_languages=["en"],
        reference_sets=["wikitext2", "c4_en"],
        reference_files={"wikitext2": str(wikitext_parquet), "c4_en": str(c4_json_gz)},
        reference_seqlen=32,
        eval_batch_size=3,  # windows that do not fill the last batch
    )
    data = PruningDataModule(config, char_tokenizer, max_positions=128)
    data.setup()
    assert data.eval_language_order == ["en", "wikitext2", "c4_en"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    kwargs = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    results = evaluate_perplexity(model, data, kwargs)
    for name in ("wikitext2", "c4_en"):
        ids = data.evaluation[name].ids
        assert results[name]["tokens"] == ids.shape[0] * (ids.shape[1] - 1)
        assert results[name]["perplexity"] == pytest.approx(independent_perplexity(model, ids), rel=1e-5)


def test_run_logs_reference_sets_beside_the_languages(tiny_model_dir, wikitext_parquet, tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), "--wandb.mode", "offline"]
    argv += ["--data.nsamples", "2", "--data.seqlen", "16", "--data.eval_windows", "1", "--data.eval_seqlen", "16"]
    argv += ["--data.eval_languages", "[en]", "--data.reference_sets", "[wikitext2]"]
    argv += ["--data.reference_files.wikitext2", str(wikitext_parquet), "--data.reference_seqlen", "64"]
    argv += ["--eval.cache_dense", "false"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    for stage in ("dense", "pruned"):
        assert set(summary["perplexity"][stage]) == {"en", "wikitext2"}
        assert math.isfinite(summary["perplexity"][stage]["wikitext2"])
    assert summary["eval_tokens"]["wikitext2"] > 0
    (run,) = find_offline_runs(out / "wandb")
    logged = read_summary(closed_log(run))
    assert logged["ppl/pruned/wikitext2"] == pytest.approx(summary["perplexity"]["pruned"]["wikitext2"])
    assert logged["ppl/dense/wikitext2"] == pytest.approx(summary["perplexity"]["dense"]["wikitext2"])


def write_json_gz(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def test_local_folder_holding_the_dataset_repository(tmp_path, char_tokenizer):
    """A folder with the repository's layout takes the Hub's own arguments: only the first validation
    shard is read, not its neighbours."""
    folder = tmp_path / "c4"
    first = [{**row, "text": f"Doc {i} is in shard 0."} for i, row in enumerate(C4_ROWS[:50])]
    write_json_gz(folder / "en" / "c4-validation.00000-of-00008.json.gz", first)
    write_json_gz(folder / "en" / "c4-validation.00001-of-00008.json.gz", [{**r, "text": "OTHER"} for r in first])
    windows = load_reference_windows("c4_en", char_tokenizer, 8, folder)
    stream = stream_of(" ".join(row["text"] for row in first), char_tokenizer)
    assert torch.equal(windows.ids.flatten(), stream[: stream.numel() // 8 * 8])
