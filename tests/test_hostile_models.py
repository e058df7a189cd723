"""Model folders and --shape configs that once gave tracebacks, hung, or figures for a model lp_prune does
not model: each is one line on stderr and exit 2 (before the run directory), or a correct result."""

import json
import shutil
import time
from pathlib import Path

import pytest

from lp_prune.cli import main
from test_input_refusals import SMALL, refusal


def model_with_config(tiny_model_dir: Path, tmp_path: Path, edit) -> Path:
    """A copy of the tiny model whose config.json is `edit(settings)` (a dict, or text written as it is)."""
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    settings = json.loads((folder / "config.json").read_text())
    changed = edit(settings)
    (folder / "config.json").write_text(changed if isinstance(changed, str) else json.dumps(changed))
    return folder


def without(*keys):
    return lambda settings: {key: value for key, value in settings.items() if key not in keys}


def setting(**changes):
    return lambda settings: {**settings, **changes}


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda _: "[1, 2]", "config.json holds a JSON list, not an object of model settings"),
        (setting(num_attention_heads=0), "config.json sets num_attention_heads to 0; it must be a positive whole"),
        (setting(num_key_value_heads=3), "the key-value heads must divide the attention heads"),
        (
            setting(intermediate_size=96),
            "config.json and the weights disagree: model.layers.0.mlp.down_proj.weight is [32, 64]",
        ),
        (
            without("hidden_size", "num_hidden_layers", "vocab_size"),
            "config.json names no hidden_size, num_hidden_layers, vocab_size",
        ),
    ],
    ids=["json-list", "zero-heads", "kv-heads", "intermediate-size", "missing-sizes"],
)
def test_a_model_folders_bad_config_is_one_line_before_the_run_dir(edit, fragment, tiny_model_dir, tmp_path, capsys):
    folder, out = model_with_config(tiny_model_dir, tmp_path, edit), tmp_path / "out"
    err = refusal(capsys, ["run", "--model.name", str(folder), "--out", str(out), *SMALL])
    assert fragment in err
    assert not out.exists()


def shape_file(tiny_model_dir: Path, tmp_path: Path, edit) -> Path:
    settings = json.loads((tiny_model_dir / "config.json").read_text())
    changed = edit(settings)
    path = tmp_path / "shape.json"
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    return path


BERT = {
    "architectures": ["BertForMaskedLM"],
    "model_type": "bert",
    **dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100),
}


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda _: BERT, "is a BertForMaskedLM, not a causal LM"),
        (
            setting(auto_map={"AutoModelForCausalLM": "modeling_x.XForCausalLM"}),
            "the config names modelling code of its own (auto_map)",
        ),
        (setting(num_hidden_layers=0), "config.json sets num_hidden_layers to 0"),
        (setting(hidden_size=-32), "config.json sets hidden_size to -32"),
        (setting(intermediate_size=-1), "config.json sets intermediate_size to -1"),
        (lambda _: "[1]", "holds a JSON list"),
        (without("hidden_size", "num_hidden_layers", "vocab_size"), "config.json names no hidden_size"),
    ],
    ids=["bert", "auto_map", "zero-layers", "negative-hidden", "negative-intermediate", "json-list", "missing"],
)
def test_estimate_refuses_shapes_it_does_not_model(edit, fragment, tiny_model_dir, tmp_path, capsys):
    shape = shape_file(tiny_model_dir, tmp_path, edit)
    err = refusal(capsys, ["estimate", "--shape", str(shape), *SMALL])
    assert f"{shape}" in err and fragment in err


def test_estimate_of_a_million_layers_is_computed_from_shapes(tiny_model_dir, tmp_path, capsys):
    huge = dict(num_hidden_layers=10**6, hidden_size=10**5, intermediate_size=4 * 10**5, head_dim=None)
    huge.update(num_attention_heads=100, num_key_value_heads=100, vocab_size=10**5)
    shape = shape_file(tiny_model_dir, tmp_path, setting(**huge))
    capsys.readouterr()
    started = time.monotonic()
    assert main(["estimate", "--shape", str(shape), *SMALL]) == 0
    assert time.monotonic() - started < 60
    weights_line = next(line for line in capsys.readouterr().out.splitlines() if "model weights" in line)
    per_layer = 4 * 10**10 + 3 * 4 * 10**10 + 2 * 10**5  # q/k/v/o, gate/up/down, two norms
    params = 10**6 * per_layer + 2 * 10**10 + 10**5  # the layers, embeddings and head, the final norm
    assert weights_line.split()[-2] == f"{params * 4 / 1024**3:.2f}"  # float32


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_a_shape_built_from_fewer_layers_counts_as_the_full_model(arch):
    from lp_prune.memory import ModelShape, with_layers
    from tiny_models import ARCHITECTURES

    full = ARCHITECTURES[arch]()
    three = ModelShape.from_config(full)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lp_prune.memory.MAX_BUILT_LAYERS", 2)
        assert ModelShape.from_config(full) == three
    assert with_layers(full, 2).num_hidden_layers == 2 and full.num_hidden_layers == 3
