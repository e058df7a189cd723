"""Self-generated calibration (data.source generated) on the tiny random model and planted windows."""

import json
import math

import pytest
import torch

from lp_prune.config import LANGUAGES, ConfigError, DataConfig, GenerationConfig, RunConfig
from lp_prune.data import PruningDataModule
from lp_prune.data.generated import (
    GENERATED_RECORD_FILE,
    generate_calibration,
    generate_calibration_mix,
    judge_language,
    judge_perplexity,
    perplexity_fences,
    save_record,
    seed_prompts,
)
from lp_prune.data.language_check import check_text_language
from lp_prune.errors import DataError

# Random weights write random characters: the language check would drop them all, and their
# perplexity is about the vocabulary size, so these tests switch both bounds off where they must.
LOOSE = GenerationConfig(check_language=False, max_perplexity=1e9, batch_size=4)

GERMAN = (
    "Die Stadt liegt am Ufer des Flusses und ist seit dem Mittelalter ein wichtiger Handelsplatz. "
    "Im Sommer kommen viele Besucher, die sich die alten Häuser und den Markt ansehen wollen."
)
ENGLISH = "The town lies on the bank of the river and has been an important market since the Middle Ages."
RUSSIAN = "Город расположен на берегу реки и со времён Средневековья был важным торговым центром."


@pytest.fixture(scope="module")
def tiny(char_tokenizer):
    from tiny_models import tiny_model

    return tiny_model("llama", vocab_size=len(char_tokenizer), attention="sdpa")


def test_every_language_ships_seed_prompts_in_its_own_language():
    for lang in LANGUAGES:
        prompts = seed_prompts(lang)
        assert 6 <= len(prompts) <= 10 and len(set(prompts)) == len(prompts)
        assert all(check_text_language(p, lang, 0.8).script_share >= 0.99 for p in prompts), lang


def test_generation_is_seeded(tiny, char_tokenizer):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, record = generate_calibration(tiny, char_tokenizer, "de", 4, 32, seed=7, options=LOOSE)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG stream is untouched
    again, _ = generate_calibration(tiny, char_tokenizer, "de", 4, 32, seed=7, options=LOOSE)
    other, _ = generate_calibration(tiny, char_tokenizer, "de", 4, 32, seed=8, options=LOOSE)
    assert first.ids.shape == (4, 32) and (first.ids[:, 0] == char_tokenizer.bos_token_id).all()
    assert torch.equal(first.ids, again.ids)
    assert not torch.isin(first.ids[:, 1:], torch.tensor(char_tokenizer.all_special_ids)).any()  # no pad, BOS, EOS
    assert not torch.equal(first.ids, other.ids)
    # The windows are the generated texts the record keeps (not the prompts), in generation order.
    kept = [w for w in record["windows"] if w["reason"] == "kept"]
    assert [char_tokenizer.decode(row[1:]) for row in first.ids] == [w["text"] for w in kept]
    assert first.n_bytes.tolist() == [len(w["text"].encode()) for w in kept]
    assert [w["prompt"] for w in record["windows"]] == seed_prompts("de")[: len(record["windows"])]


def test_planted_off_language_windows_are_dropped():
    options = GenerationConfig()
    assert judge_language(0, "p", GERMAN, "de", options)["reason"] == "kept"
    cyrillic = judge_language(1, "p", RUSSIAN, "de", options)
    assert cyrillic["reason"].startswith("language: 0% of the words in LATIN script")
    english = judge_language(2, "p", ENGLISH, "de", options)
    assert english["reason"].startswith("language: stopwords: en")  # Latin script, but English words
    assert judge_language(3, "p", RUSSIAN, "ru", options)["reason"] == "kept"
    assert judge_language(4, "p", RUSSIAN, "de", GenerationConfig(check_language=False))["reason"] == "kept"


def test_language_check_on_other_scripts():
    assert check_text_language("يعود تاريخ المدينة إلى أكثر من ألف عام", "ar").passed
    assert check_text_language("这座城市的历史可以追溯到一千多年前，当时使用API和Docker", "zh").passed  # 2 Latin words
    assert not check_text_language("The city is old and the people in it are kind to all of us.", "zh").passed
    assert not check_text_language("Watu wengi wanaamini kwamba kujifunza lugha ya pili ni vigumu", "es").passed
    assert check_text_language("Watu wengi wanaamini kwamba kujifunza lugha ya pili ni vigumu", "sw").passed


def test_perplexity_fences_by_hand():
    # Quartiles of 0..4 (linear interpolation): Q1 = 1, Q3 = 3, IQR 2: fences 1 - 3 and 3 + 3.
    assert perplexity_fences([0.0, 1.0, 2.0, 3.0, 4.0], 1.5) == pytest.approx((-2.0, 6.0))
    assert perplexity_fences([0.0, 1.0, 2.0], 1.5) == (-math.inf, math.inf)  # too few to judge
    assert perplexity_fences([0.0, 1.0, 2.0, 3.0], 0.0) == (-math.inf, math.inf)  # switched off


def test_planted_extreme_perplexities_are_dropped():
    def entries(perplexities, first_reason="kept"):
        out = [{"perplexity": p, "reason": "kept"} for p in perplexities]
        out[0]["reason"] = first_reason
        return out

    normal = [10.0, 11.0, 9.0, 12.0, 10.5, 9.5]
    planted = entries([*normal, 5000.0, 1.01])
    judge_perplexity(planted, GenerationConfig(max_perplexity=1e6))
    assert [e["reason"] for e in planted[:6]] == ["kept"] * 6
    assert planted[6]["reason"].startswith("perplexity: 5000.0 above the upper fence")
    assert planted[7]["reason"].startswith("perplexity: 1.01 below the lower fence")  # a repetition loop
    fixed = entries([*normal, 500.0])
    judge_perplexity(fixed, GenerationConfig(max_perplexity=100.0, perplexity_fence=0.0))
    assert fixed[6]["reason"] == "perplexity: 500.0 above max_perplexity 100"
    # A window that failed the language check keeps that reason and takes no part in the fences.
    gibberish = entries([*normal, 5000.0], first_reason="language: x")
    judge_perplexity(gibberish, GenerationConfig())
    assert gibberish[0]["reason"] == "language: x" and gibberish[6]["reason"].startswith("perplexity")


def test_gives_up_after_the_bounded_tries_with_one_clear_line(tiny, char_tokenizer):
    strict = GenerationConfig(batch_size=4, tries=2.0, max_perplexity=1e9)  # random text fails the check
    with pytest.raises(DataError) as err:
        generate_calibration(tiny, char_tokenizer, "en", 4, 16, seed=0, options=strict)
    message = str(err.value)
    assert "only 0 of 4 windows passed after 8 generated (dropped: 8 language)" in message
    assert "\n" not in message


def test_record_is_written_into_the_run_directory(tiny, char_tokenizer, tmp_path):
    windows, languages, record = generate_calibration_mix(
        tiny, char_tokenizer, {"sw": 2, "zh": 3}, 16, seed=0, options=LOOSE
    )
    assert windows.ids.shape == (5, 16) and languages == ["sw", "sw", "zh", "zh", "zh"]
    path = save_record(tmp_path, record)
    assert path == tmp_path / GENERATED_RECORD_FILE
    saved = json.loads(path.read_text())
    zh = saved["languages"]["zh"]
    assert zh["seed"] == 0 and zh["settings"]["temperature"] == LOOSE.temperature
    assert zh["settings"]["top_k"] == LOOSE.top_k and zh["settings"]["top_p"] == LOOSE.top_p
    assert zh["kept"] == 3 and zh["generated"] == 3  # the first batch is as large as needed
    assert [w["reason"] for w in zh["windows"]] == ["kept", "kept", "kept"]
    assert all({"prompt", "text", "perplexity", "reason"} <= set(w) for w in zh["windows"])
    assert zh["windows"][1]["prompt"] == seed_prompts("zh")[1]


def test_config_and_datamodule_for_the_generated_source(tiny, char_tokenizer):
    config = DataConfig(source="generated", calibration_language="sw", nsamples=4, seqlen=16, eval_windows=1,
                        eval_seqlen=16, eval_languages=["sw"], generation={"temperature": 0.5})  # fmt: skip
    assert config.generation == GenerationConfig(temperature=0.5)  # a dict, as read back from config.yaml
    RunConfig(data=config).validate()
    data = PruningDataModule(config, char_tokenizer)
    data.setup()
    assert data.calibration is None and set(data.evaluation) == {"sw"}  # evaluation from the packaged text
    assert len(data.val_dataloader()) == 1
    windows, _ = generate_calibration(tiny, char_tokenizer, "sw", 4, 16, seed=0, options=LOOSE)
    data.set_calibration(windows, ["sw"] * 4)
    assert data.calibration.ids.shape == (4, 16) and data.calibration_languages == ["sw"] * 4
    assert data.calibration_record["sources"]["sw"]["source"] == "generated"
    for key, value, message in [
        ("temperature", 0.0, "temperature must be positive"),
        ("top_p", 1.5, "top_p must lie in (0, 1]"),
        ("top_k", -1, "top_k must be 0 (off) or more"),
        ("tries", 0.5, "tries must be at least 1"),
        ("min_script_share", 2.0, "min_script_share must lie in [0, 1]"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            DataConfig(source="generated", generation={key: value}).validate()


def test_window_perplexity_is_the_models_own(tiny, char_tokenizer):
    """The perplexity read off generate's logits equals a plain forward over prompt + window."""
    windows, record = generate_calibration(tiny, char_tokenizer, "es", 2, 16, seed=3, options=LOOSE)
    kept = [w for w in record["windows"] if w["reason"] == "kept"]
    for row, entry in zip(windows.ids, kept, strict=True):
        prompt = char_tokenizer(entry["prompt"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([[char_tokenizer.bos_token_id, *prompt, *row[1:].tolist()]])
        with torch.no_grad():
            log_probs = torch.log_softmax(tiny(input_ids=ids).logits[0, :-1].double(), dim=-1)
        targets = ids[0, 1:]
        token_log_probs = log_probs.gather(1, targets[:, None]).squeeze(1)[-15:]  # the 15 generated tokens
        assert math.log(entry["perplexity"]) == pytest.approx(-float(token_log_probs.mean()), rel=1e-4)


def test_generation_is_cached_per_model_mix_and_seed(tiny, char_tokenizer, tmp_path, monkeypatch):
    """SparseGPT and Wanda runs of one target share the generated text: the second reads it back."""
    from lp_prune.config import ModelConfig
    from lp_prune.data import generated

    monkeypatch.setenv("LP_PRUNE_CACHE", str(tmp_path))
    calls = []
    real = generated.generate_calibration_mix

    def counted(*args, **kwargs):
        calls.append(args[4])  # the seed
        return real(*args, **kwargs)

    monkeypatch.setattr(generated, "generate_calibration_mix", counted)
    model_config = ModelConfig(name="tiny")

    def generate(seed):
        return generated.cached_generate_calibration_mix(
            model_config, tiny, char_tokenizer, {"en": 2, "sw": 1}, 16, seed, LOOSE
        )

    first, languages, record = generate(0)
    again, languages_again, record_again = generate(0)
    other, _, _ = generate(1)
    assert calls == [0, 1]
    assert torch.equal(first.ids, again.ids) and torch.equal(first.n_bytes, again.n_bytes)
    assert languages == languages_again == ["en", "en", "sw"]
    assert record["cache"] is None and record_again["cache"].endswith(".pt")
    assert record_again["languages"] == json.loads(json.dumps(record["languages"]))
    assert not torch.equal(first.ids, other.ids)


def test_a_run_calibrates_on_generated_text(tiny_model_dir, tmp_path):
    """data.source generated end to end: the model writes its windows after it loads, the run records
    them (texts and filter reasons, token file) and prunes on them."""
    import json

    from lp_prune.cli import main
    from lp_prune.storage.files import read_json

    out = tmp_path / "run"
    args = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), "--data.source", "generated",
            "--data.nsamples", "4", "--data.seqlen", "16", "--data.eval_windows", "1", "--data.eval_seqlen", "16",
            "--data.eval_languages", "[en]", "--data.generation.check_language", "false",  # random weights: no language
            "--data.generation.perplexity_fence", "0", "--data.generation.max_perplexity", "1e9",
            "--wandb.mode", "disabled"]  # fmt: skip
    assert main(args) == 0
    record = read_json(out / "calibration.json")
    assert record["shape"] == [4, 16] and {s["source"] for s in record["sources"].values()} == {"generated"}
    generated = json.loads((out / GENERATED_RECORD_FILE).read_text())
    assert generated  # the texts and why windows were kept or dropped
    ids = torch.load(out / "calibration_tokens.pt")
    assert ids.shape == (4, 16) and read_json(out / "summary.json")["sparsity"] == pytest.approx(0.5, abs=0.01)
