"""Bad inputs that once gave tracebacks: each is one line on stderr and exit 2, before --out is written.

The faults are planted without permissions (tests run as root): a regular file where a folder must
be made, or a monkeypatched failure.
"""

import json
import logging
import random
import shutil
from pathlib import Path

import pytest
import torch

from lp_prune.cli import main
from lp_prune.config import ModelConfig, RunConfig, WandbConfig
from lp_prune.data.windows import TokenWindows, load_token_file
from lp_prune.errors import ConfigError, DataError
from lp_prune.tracking.wandb_logger import resolve_mode

SMALL = [
    *("--data.nsamples", "4", "--data.seqlen", "32"),
    *("--data.eval_windows", "1", "--data.eval_seqlen", "32", "--data.eval_languages", "[en]"),
]


def run_argv(model: Path | str, out: Path, *flags: str) -> list[str]:
    return ["run", "--model.name", str(model), "--out", str(out), *SMALL, *flags]


def refusal(capsys, argv: list[str]) -> str:
    """Exit code 2 and the one error line (output from before the command is dropped)."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("lp-prune: error:"), err
    return err


def assert_refused_early(capsys, argv: list[str], out: Path, *fragments: str) -> None:
    """One error line holding every fragment, and no run directory made."""
    err = refusal(capsys, argv)
    for fragment in fragments:
        assert fragment in err, err
    assert not out.exists(), f"{out} was written before the refusal"


def copy_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


# --- 1. seeds ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "value"), [("--seed", "-1"), ("--seed", str(2**32)), ("--data.seed", "-1")])
def test_seed_outside_numpys_range_is_refused_before_the_run_dir(flag, value, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert_refused_early(
        capsys, run_argv(tiny_model_dir, out, flag, value), out, "must be a non-negative integer below 2**32", value
    )


def test_largest_numpy_seed_is_accepted():
    RunConfig(seed=2**32 - 1).validate()
    with pytest.raises(ConfigError, match="seed must be"):
        RunConfig(seed=True).validate()  # a bool is an int to Python, not a seed


# --- 2. token files that are not dense integer tensors -----------------------------------------------


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's note on sparse invariant checks
def test_sparse_token_file_is_refused_before_the_run_dir(tiny_model_dir, tmp_path, capsys):
    token_file, out = tmp_path / "ids.pt", tmp_path / "out"
    torch.save(torch.sparse_coo_tensor(torch.tensor([[0, 1], [0, 1]]), torch.tensor([3, 4]), (4, 32)), token_file)
    argv = run_argv(tiny_model_dir, out, "--data.source", "tokens", "--data.token_file", str(token_file))
    assert_refused_early(capsys, argv, out, "ids.pt holds a sparse_coo tensor", "dense [n, seqlen] tensor of integer")


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda: torch.arange(128).reshape(4, 32).to_sparse_csr(), "sparse_csr"),
        (lambda: torch.empty(4, 32, dtype=torch.long, device="meta"), "meta"),
        (lambda: torch.quantize_per_tensor(torch.rand(4, 32), 0.1, 0, torch.quint8), "quantized"),
    ],
    ids=["sparse_csr", "meta", "quantized"],
)
@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's notes on beta and deprecated tensor kinds
def test_token_file_of_another_tensor_kind_names_it(make, kind, tmp_path):
    path = tmp_path / "ids.pt"
    torch.save(make(), path)
    with pytest.raises(DataError, match=f"holds a {kind}.*dense \\[n, seqlen\\] tensor of integer token ids"):
        load_token_file(path, seqlen=32)


# --- 3. models lp_prune cannot prune -----------------------------------------------------------------


def save_with_char_tokenizer(model: torch.nn.Module, folder: Path) -> Path:
    from conftest import build_char_tokenizer

    model.save_pretrained(folder)
    build_char_tokenizer().save_pretrained(folder)
    return folder


def tiny_bert(kind: str, vocab_size: int) -> torch.nn.Module:
    from transformers import BertConfig, BertForMaskedLM, BertModel

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return {"BertModel": BertModel, "BertForMaskedLM": BertForMaskedLM}[kind](config)


@pytest.mark.parametrize("kind", ["BertModel", "BertForMaskedLM"])
def test_bert_folder_is_refused_as_not_a_causal_lm(kind, char_tokenizer, tmp_path, capsys):
    folder, out = save_with_char_tokenizer(tiny_bert(kind, len(char_tokenizer)), tmp_path / "bert"), tmp_path / "out"
    assert_refused_early(capsys, run_argv(folder, out), out, f"is a {kind}, not a causal LM")


def test_bert_config_without_architectures_is_refused(char_tokenizer, tmp_path, capsys):
    folder = save_with_char_tokenizer(tiny_bert("BertModel", len(char_tokenizer)), tmp_path / "bert")
    out = tmp_path / "out"
    config = json.loads((folder / "config.json").read_text())
    del config["architectures"]  # AutoModelForCausalLM would build a BertLMHeadModel around the encoder
    (folder / "config.json").write_text(json.dumps(config))
    assert_refused_early(capsys, run_argv(folder, out), out, "is not a decoder-only causal LM", "BertEncoder")


def test_gpt2_folder_is_refused_naming_conv1d(char_tokenizer, tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(char_tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=128)
    folder, out = save_with_char_tokenizer(GPT2LMHeadModel(config), tmp_path / "gpt2"), tmp_path / "out"
    assert_refused_early(
        capsys,
        run_argv(folder, out),
        out,
        "(GPT2LMHeadModel) is built of transformers Conv1D modules",
        "cannot prune it",
    )


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "gemma3", "cohere"])
def test_supported_architectures_pass_the_layout_check(arch):
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from lp_prune.models.loading import check_prunable_causal_lm
    from tiny_models import ARCHITECTURES

    model_config = ARCHITECTURES[arch]()
    model_config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_config.model_type]]  # as saved
    check_prunable_causal_lm(ModelConfig(name=arch), model_config)


# --- 4. damaged or missing weight files --------------------------------------------------------------


def _random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(1000))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _append(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0\0")


def _bad_header(path: Path) -> None:
    path.write_bytes((12).to_bytes(8, "little") + b"not json at all" + b"\0" * 64)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_random_bytes, "not a safetensors file"),
        (_truncate, "truncated"),
        (_append, "2 bytes after the tensor data"),
        (_bad_header, "its header is not a safetensors JSON header"),
    ],
)
def test_damaged_safetensors_is_refused_before_the_run_dir(damage, problem, tiny_model_dir, tmp_path, capsys):
    folder, out = copy_model(tiny_model_dir, tmp_path), tmp_path / "out"
    damage(folder / "model.safetensors")
    assert_refused_early(
        capsys, run_argv(folder, out), out, f"weight file {folder / 'model.safetensors'} is damaged", problem
    )


def test_intact_safetensors_has_no_problem(tiny_model_dir):
    from lp_prune.models.loading import safetensors_problem

    assert safetensors_problem(tiny_model_dir / "model.safetensors") is None


def test_folder_without_weights_is_refused_before_the_run_dir(tiny_model_dir, tmp_path, capsys):
    folder, out = copy_model(tiny_model_dir, tmp_path), tmp_path / "out"
    (folder / "model.safetensors").unlink()
    assert_refused_early(capsys, run_argv(folder, out), out, "the folder holds no weights (model.safetensors")


def test_index_naming_a_missing_shard_is_refused(tiny_model_dir, tmp_path, capsys):
    folder, out = copy_model(tiny_model_dir, tmp_path), tmp_path / "out"
    (folder / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_refused_early(
        capsys, run_argv(folder, out), out, "names shards that are missing: model-00001-of-00002.safetensors"
    )


# --- 5. WANDB_MODE -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["garbage", ""])
def test_unknown_wandb_mode_variable_is_refused_before_the_run_dir(
    value, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("WANDB_MODE", value)
    out = tmp_path / "out"
    assert_refused_early(
        capsys, run_argv(tiny_model_dir, out), out, f"WANDB_MODE '{value}'", "online, offline, disabled, dryrun"
    )


def test_wandb_mode_variable_is_ignored_when_wandb_is_disabled(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "garbage")
    assert resolve_mode(WandbConfig(mode="disabled")) == "disabled"  # wandb is never started then
    with pytest.raises(ConfigError, match="WANDB_MODE 'garbage'"):
        resolve_mode(WandbConfig(mode="offline"))  # wandb.init itself would reject it


# --- 6. an unwritable cache: a warning, and the run goes on without caching --------------------------


@pytest.fixture
def cache_in_the_way(tmp_path, monkeypatch) -> Path:
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LP_PRUNE_CACHE", str(blocker))
    return blocker


def test_unwritable_cache_warns_and_the_run_completes(cache_in_the_way, tiny_model_dir, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert main(run_argv(tiny_model_dir, out, "--wandb.mode", "disabled")) == 0
    assert (out / "status").read_text().strip() == "COMPLETE"
    assert "dense perplexity not cached: cannot write" in caplog.text
    assert "set LP_PRUNE_CACHE to a writable folder" in caplog.text


def test_damaged_dense_cache_entry_is_evaluated_again(tmp_path, monkeypatch, caplog):
    from lp_prune.evaluation.perplexity import cached_dense_perplexity, dense_cache_key

    monkeypatch.setenv("LP_PRUNE_CACHE", str(tmp_path))
    model = ModelConfig(name="some-model")
    windows = {"en": TokenWindows(ids=torch.ones(1, 4, dtype=torch.long), n_bytes=torch.ones(1, dtype=torch.long))}
    entry = tmp_path / "dense_perplexity" / f"{dense_cache_key(model, windows)}.json"
    entry.parent.mkdir()
    entry.write_text("{not json")
    results = {"en": {"perplexity": 2.0}}
    with caplog.at_level(logging.WARNING):
        assert cached_dense_perplexity(model, windows, lambda: results) == results
    assert "unreadable, evaluating again" in caplog.text
    assert json.loads(entry.read_text()) == results  # the entry is repaired


def test_unwritable_cache_costs_generated_calibration_only_its_caching(cache_in_the_way, monkeypatch, caplog):
    from lp_prune.data import generated

    windows = TokenWindows(ids=torch.ones(2, 4, dtype=torch.long), n_bytes=torch.ones(2, dtype=torch.long))
    monkeypatch.setattr(generated, "generate_calibration_mix", lambda *args: (windows, ["en", "en"], {}))
    with caplog.at_level(logging.WARNING):
        result, languages, _ = generated.cached_generate_calibration_mix(
            ModelConfig(name="some-model"), torch.nn.Linear(2, 2), None, {"en": 2}, 4, 0
        )
    assert result is windows and languages == ["en", "en"]
    assert "generated calibration not cached: cannot write" in caplog.text


def test_unwritable_cache_refuses_the_packaged_model_before_the_run_dir(cache_in_the_way, tmp_path, capsys):
    out = tmp_path / "out"
    argv = run_argv("gemma3-270m", out)
    assert_refused_early(
        capsys, argv, out, f"the cache {cache_in_the_way}, which cannot be written (a file is in the way)"
    )


def test_unwritable_cache_refuses_proxy_tasks_before_the_run_dir(cache_in_the_way, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = run_argv(tiny_model_dir, out, "--eval.tasks", "[proxy]")
    assert_refused_early(capsys, argv, out, "the proxy tasks are written into the cache", "LP_PRUNE_CACHE")


# --- 7. compare: damaged summaries, an unwritable report folder --------------------------------------


@pytest.fixture(scope="module")
def complete_run(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("complete") / "run"
    assert main(run_argv(tiny_model_dir, out, "--eval.perplexity", "false", "--wandb.mode", "disabled")) == 0
    return out


def sweep_of(run: Path, tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    shutil.copytree(run, sweep / "a")
    return sweep


@pytest.mark.parametrize("content", ["[]", "{}"])
def test_compare_names_a_summary_that_is_not_one(content, complete_run, tmp_path, capsys):
    sweep = sweep_of(complete_run, tmp_path)
    (sweep / "a" / "summary.json").write_text(content)
    err = refusal(capsys, ["compare", str(sweep), "--no_wandb"])
    assert str(sweep / "a" / "summary.json") in err and "the run is damaged" in err


def test_compare_refuses_a_report_path_that_is_a_file(complete_run, tmp_path, capsys):
    sweep, report = sweep_of(complete_run, tmp_path), tmp_path / "report"
    report.write_text("in the way")
    err = refusal(capsys, ["compare", str(sweep), "--no_wandb", "--out", str(report)])
    assert f"cannot write the report into {report} (a file is in the way)" in err


def test_compare_refuses_a_read_only_report_folder(complete_run, tmp_path, monkeypatch, capsys):
    from lp_prune.tracking import run_dir

    def read_only(folder):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(run_dir, "_probe_writable", read_only)
    sweep = sweep_of(complete_run, tmp_path)
    err = refusal(capsys, ["compare", str(sweep), "--no_wandb", "--out", str(tmp_path / "report")])
    assert "(Permission denied); choose another --out" in err


def test_compare_of_runs_without_perplexity_draws_no_empty_heatmap(complete_run, tmp_path, monkeypatch, capsys):
    sweep = sweep_of(complete_run, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(sweep), "--no_wandb"]) == 0
    report = tmp_path / "compare" / "sweep"  # the default: ./compare/<compared folder>
    assert (report / "report.html").is_file()
    assert not list(report.glob("perplexity_*.png"))


# --- 8. a binary --config file -----------------------------------------------------------------------


def test_binary_config_file_is_one_line(tiny_model_dir, tmp_path, capsys):
    config, out = tmp_path / "binary.yaml", tmp_path / "out"
    config.write_bytes(random.Random(0).randbytes(200))
    argv = ["run", "--config", str(config), "--model.name", str(tiny_model_dir), "--out", str(out)]
    assert_refused_early(capsys, argv, out, "binary.yaml")
