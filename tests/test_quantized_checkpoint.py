"""The quantizing methods' grids and the pack-quantized checkpoint (RUN_DIR/model-compressed), on tiny
random models."""

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, CompressedTensorsConfig

import lp_prune
from lp_prune.calibration.checkpoint import LayerCheckpoint, load_layer_results
from lp_prune.calibration.results import LayerResult, LinearResult, ModuleRecord
from lp_prune.cli import main
from lp_prune.pruning import GroupInputs, PruneContext, Runtime, method_named
from lp_prune.pruning.masks import packed_mask
from lp_prune.pruning.quantize import round_to_nearest_on_grid
from lp_prune.tracking.quantized_checkpoint import save_quantized_streaming
from lp_prune.tracking.saved_model import load_weights, weight_files
from tiny_models import tiny_model

# --- the grid each method records -----------------------------------------------------------------

GRID_CASES = {
    "gptq per channel": ("gptq", {}),
    "gptq grouped": ("gptq", {"group_size": 16}),
    "gptq act_order": ("gptq", {"act_order": True}),
    "gptq act_order grouped": ("gptq", {"act_order": True, "group_size": 16}),
    "gptq symmetric": ("gptq", {"symmetric": True, "group_size": 32}),
    "gptq 3 bits": ("gptq", {"bits": 3, "group_size": 16}),
    "rtn per channel": ("rtn", {}),
    "rtn grouped symmetric": ("rtn", {"group_size": 16, "symmetric": True}),
    "sparsegpt_gptq per channel": ("sparsegpt_gptq", {}),
    "sparsegpt_gptq grouped": ("sparsegpt_gptq", {"group_size": 16}),
}


def solve(method, settings, rows=(24, 16), columns=64):
    """Two weights sharing one input (a stacked solve), pruned/quantized by `method`."""
    torch.manual_seed(0)
    weights = [torch.randn(r, columns) for r in rows]
    inputs = torch.randn(400, columns) * torch.linspace(0.1, 3.0, columns)  # act_order reorders these
    gram = (inputs.T @ inputs).float()
    stats = GroupInputs(sq_norms=inputs.square().sum(0), gram=gram, samples=1)
    chosen = method_named(method, {**settings, "blocksize": 32})
    return weights, chosen.prune(weights, 0.5, stats, PruneContext(), Runtime())


@pytest.mark.parametrize("case", list(GRID_CASES))
def test_the_recorded_grid_reproduces_the_weights_exactly(case):
    method, flags = GRID_CASES[case]
    settings = method_named(method, flags).settings()
    weights, results = solve(method, flags)
    for weight, result in zip(weights, results, strict=True):
        grid = result.grid
        assert (grid.bits, grid.symmetric, grid.group_size) == (
            settings["bits"],
            settings["symmetric"],
            settings["group_size"],
        )
        groups = 1 if settings["group_size"] is None else weight.shape[1] // settings["group_size"]
        assert grid.scale.shape == grid.zero.shape == (weight.shape[0], groups)
        assert (grid.g_idx is not None) == (settings.get("act_order", False) and settings["group_size"] is not None)
        codes = grid.codes(result.weight)
        assert torch.equal(codes, codes.round()) and codes.min() >= 0 and codes.max() <= 2**grid.bits - 1
        assert result.weight.dtype == torch.float32
        index = grid.column_groups(weight.shape[1])
        assert torch.equal(grid.scale[:, index] * (codes - grid.zero[:, index]), result.weight)
        assert_zero_points_fit(grid, result.weight)


def assert_zero_points_fit(grid, weight):
    """The zero points are the ones the codes were rounded around: an asymmetric grid's unclamped codes
    span exactly [0, 2^bits - 1] somewhere (a zero point off by one pushes them out); a symmetric grid's
    zero is the middle of the grid."""
    top = 2**grid.bits - 1
    assert torch.equal(grid.zero, grid.zero.round()) and grid.zero.min() >= 0 and grid.zero.max() <= top
    if grid.symmetric:
        assert (grid.zero == 2 ** (grid.bits - 1)).all()
        return
    index = grid.column_groups(weight.shape[1])
    raw = torch.round(weight / grid.scale[:, index]) + grid.zero[:, index]
    assert raw.min() == 0 and raw.max() == top


def test_act_order_groups_are_consecutive_visited_columns():
    _, results = solve("gptq", {"act_order": True, "group_size": 16})
    g_idx = results[0].grid.g_idx
    assert g_idx.dtype == torch.int64 and torch.equal(torch.bincount(g_idx), torch.full((4,), 16))
    assert not torch.equal(g_idx, torch.arange(64) // 16)  # scattered: the inputs grow in energy to the right
    assert g_idx[-1] == 0 and g_idx[0] == 3  # the strongest input (rightmost here) is visited first, the weakest last


def test_pruned_entries_of_the_joint_method_are_the_zero_point():
    _, results = solve("sparsegpt_gptq", {"group_size": 16})
    for result in results:
        codes = result.grid.codes(result.weight)
        zeros = result.grid.zero[:, result.grid.column_groups(64)]
        assert result.mask.float().mean() == 0.5 and torch.equal(codes[result.mask], zeros[result.mask])


def test_codes_of_a_bfloat16_weight_cast_back_to_it_at_8_bits():
    """bfloat16 keeps 8 significant bits: at 8-bit codes, w / scale can round to the neighbouring code."""
    _, results = solve("gptq", {"bits": 8, "group_size": 16})
    for result in results:
        cast = result.weight.bfloat16()
        assert torch.equal(result.grid.dequantize(result.grid.codes(cast)).bfloat16(), cast)


def test_a_resumed_run_gets_the_grids_back_from_its_progress(tmp_path):
    model = tiny_model()
    prefix = "model.layers.0."
    names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    names += ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    linears, grids = [], {}
    for name in names:
        weight = model.get_submodule(prefix + name).weight.detach()
        flags = {"act_order": True, "group_size": 16} if weight.shape[1] == 32 else {}  # down_proj: per channel
        _, [result] = solve("gptq", flags, rows=(weight.shape[0],), columns=weight.shape[1])
        grid = result.grid
        record = ModuleRecord(0, prefix + name, weight.numel(), 0.0, 0.0, 0.0, 0.0, 0.0, None, None)
        mask = packed_mask(torch.zeros_like(weight, dtype=torch.bool))
        linears.append(LinearResult(prefix + name, weight, mask, record, grid))
        grids[prefix + name] = grid
    LayerCheckpoint(tmp_path).save(LayerResult(0, linears))
    [replayed] = load_layer_results(tmp_path, model)
    for linear in replayed.linears:
        saved = grids[linear.name]
        assert (linear.grid.bits, linear.grid.symmetric, linear.grid.group_size) == (4, False, saved.group_size)
        assert torch.equal(linear.grid.scale, saved.scale) and torch.equal(linear.grid.zero, saved.zero)
        assert (linear.grid.g_idx is None) == (saved.g_idx is None)
        if saved.g_idx is not None:
            assert torch.equal(linear.grid.g_idx, saved.g_idx)


# --- the pack-quantized folder of a run ------------------------------------------------------------

SMALL = [
    *("--data.nsamples", "4", "--data.seqlen", "32", "--data.batch_size", "2"),
    *("--data.eval_windows", "2", "--data.eval_seqlen", "32", "--data.eval_languages", "[en]"),
    *("--save_model", "true", "--wandb.mode", "disabled"),
]
RUNS = {
    "gptq": ["--prune.method", "gptq", "--prune.group_size", "16", "--save_shard_size", "100KB"],
    "rtn symmetric 8-bit": ["--prune.method", "rtn", "--prune.bits", "8", "--prune.symmetric", "true"],
    "gptq act_order": ["--prune.method", "gptq", "--prune.act_order", "true"],
    "sparsegpt_gptq 3-bit": ["--prune.method", "sparsegpt_gptq", "--prune.bits", "3", "--prune.group_size", "16"],
    "gptq bfloat16 8-bit": [
        "--prune.method",
        "gptq",
        "--prune.bits",
        "8",
        "--prune.group_size",
        "16",
        "--model.dtype",
        "bfloat16",
    ],
}


@pytest.fixture(scope="module", params=list(RUNS))
def run(request, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("quantized-run") / "run"
    assert main(["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL, *RUNS[request.param]]) == 0
    return request.param, out


def stored_modules(folder):
    """{module: {part: tensor}} of every pack-quantized Linear, read across shards."""
    modules = {}
    for file in weight_files(folder):
        with safe_open(file, framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - not a dict
                prefix, _, part = name.rpartition(".")
                if part.startswith("weight_"):
                    modules.setdefault(prefix, {})[part] = handle.get_tensor(name)
    return modules


def quantization_block(out):
    return json.loads((out / "model-compressed" / "config.json").read_text())["quantization_config"]


def test_the_folder_carries_compressed_tensors_quantization_config(run):
    name, out = run
    block = quantization_block(out)
    assert block["quant_method"] == "compressed-tensors" and block["format"] == "pack-quantized"
    assert block["quantization_status"] == "compressed" and block["ignore"] == ["lm_head"]
    [group] = block["config_groups"].values()
    weights = group["weights"]
    bits = int(RUNS[name][RUNS[name].index("--prune.bits") + 1]) if "--prune.bits" in RUNS[name] else 4
    size = 16 if "--prune.group_size" in RUNS[name] else None
    assert group["targets"] == ["Linear"] and group["format"] == "pack-quantized"
    assert (weights["num_bits"], weights["type"], weights["group_size"]) == (bits, "int", size)
    assert weights["strategy"] == ("group" if size else "channel")
    assert weights["symmetric"] == ("symmetric" in name)
    assert "quantization_config" not in json.loads((out / "model" / "config.json").read_text())
    dense_record = out / "model" / "sparsity_config.json"
    if name.startswith("sparsegpt_gptq"):  # joint: model/ records its zeros, stored dense
        assert json.loads(dense_record.read_text())["format"] == "dense"
    else:
        assert not dense_record.exists()


def test_compressed_tensors_own_decompressor_gives_model_weights_bit_for_bit(run):
    """The stored scale is the solve's float32 one, so scale * (q - zero) is the very product the solve
    computed: bit for bit model/'s weight once cast to the model's dtype (bfloat16 too)."""
    from compressed_tensors.compressors import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationScheme

    _, out = run
    [group] = quantization_block(out)["config_groups"].values()
    scheme = QuantizationScheme.model_validate(group)
    dense = load_weights(out / "model")
    modules = stored_modules(out / "model-compressed")
    assert sorted(modules) == sorted(lp_prune.load_masks(out))  # every quantized Linear, and nothing else
    for module, parts in modules.items():
        assert parts["weight_packed"].dtype == torch.int32 and parts["weight_shape"].tolist() == list(
            dense[f"{module}.weight"].shape
        )
        assert ("weight_zero_point" in parts) == (not scheme.weights.symmetric)
        assert parts["weight_scale"].dtype == torch.float32
        weight = PackedQuantizationCompressor.decompress(parts, scheme)["weight"]
        expected = dense[f"{module}.weight"]
        assert weight.dtype == torch.float32 and torch.equal(weight.to(expected.dtype), expected), module
    stored = load_weights(out / "model-compressed")
    others = {name: t for name, t in stored.items() if not name.rpartition(".")[2].startswith("weight_")}
    assert set(others) == {name for name in dense if name.removesuffix(".weight") not in modules}
    assert all(torch.equal(tensor, dense[name]) for name, tensor in others.items())


def test_packed_codes_take_bits_per_weight(run):
    _, out = run
    modules = stored_modules(out / "model-compressed")
    dense = load_weights(out / "model")
    bits = quantization_block(out)["config_groups"]["group_0"]["weights"]["num_bits"]
    for module, parts in modules.items():
        rows, cols = dense[f"{module}.weight"].shape
        assert parts["weight_packed"].shape == (rows, -(-cols * bits // 32))


def test_transformers_loads_the_folder_with_dequantize_and_gives_model_logits(run):
    _, out = run
    dense = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    loaded = AutoModelForCausalLM.from_pretrained(
        out / "model-compressed", quantization_config=CompressedTensorsConfig(dequantize=True)
    ).eval()
    ids = torch.arange(3, 19).reshape(2, 8)
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, dense(ids).logits)


def test_transformers_plain_from_pretrained_reads_symmetric_grids_only(run):
    """transformers 5.25 + compressed-tensors 0.20.1: a plain from_pretrained builds the zero point in its
    unpacked shape and refuses the packed one (size mismatch, the same for a folder compressed-tensors
    writes itself); symmetric grids store no zero point and load, decompressed at the first forward.
    Should the asymmetric case start to load, the card and README can drop the dequantize advice."""
    name, out = run
    dense = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    ids = torch.arange(3, 19).reshape(2, 8)
    if "symmetric" not in name:
        with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
            AutoModelForCausalLM.from_pretrained(out / "model-compressed")
        return
    loaded = AutoModelForCausalLM.from_pretrained(out / "model-compressed").eval()
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, dense(ids).logits)


def test_the_card_says_the_format_and_how_to_load_it(run):
    name, out = run
    text = (out / "model-compressed" / "README.md").read_text()
    assert "pack-quantized" in text and "CompressedTensorsConfig(dequantize=True)" in text
    assert "compressed-tensors" in text.split("---")[1]  # a tag
    summary = json.loads((out / "summary.json").read_text())
    if name.startswith("sparsegpt_gptq"):
        assert f"{summary['sparsity']:.4f}" in text and "zeros are stored as codes" in text
    assert (out / "model-compressed" / "tokenizer.json").is_file()


def test_grouped_act_order_writes_no_compressed_folder_and_says_why(tiny_model_dir, tmp_path, caplog):
    out = tmp_path / "run"
    argv = ["run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL]
    argv += ["--prune.method", "gptq", "--prune.act_order", "true", "--prune.group_size", "16"]
    with caplog.at_level(logging.WARNING, logger="lp_prune.tracking.quantized_checkpoint"):
        assert main(argv) == 0
    assert (out / "model" / "config.json").is_file() and not (out / "model-compressed").exists()
    warnings = [r.getMessage() for r in caplog.records if r.name == "lp_prune.tracking.quantized_checkpoint"]
    assert len(warnings) == 1 and "g_idx" in warnings[0]


def test_two_process_ddp_saves_the_grids_of_both_processes(tiny_model_dir, tmp_path):
    """Solves are shared out: rank 0 writes the folder from grids half of which rank 1 computed."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "lp_prune", "run", "--model.name", str(tiny_model_dir), "--out", str(out), *SMALL]
    cmd += [*RUNS["gptq"], "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LP_PRUNE_RUN_DIR", None)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
    test_compressed_tensors_own_decompressor_gives_model_weights_bit_for_bit(("gptq", out))


def test_a_linear_without_a_grid_gives_no_folder_and_one_warning(tmp_path, caplog):
    """E.g. layers replayed from progress that holds no grids: storing those Linears dense under a config
    that names every Linear quantized would be a broken folder."""
    model = tiny_model()
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "layers" in name}
    grids = {name: round_to_nearest_on_grid(m.weight.detach(), 4)[1] for name, m in linears.items()}
    skipped = sorted(grids)[0]
    del grids[skipped]
    with caplog.at_level(logging.WARNING, logger="lp_prune.tracking.quantized_checkpoint"):
        assert save_quantized_streaming(model, tmp_path / "model-compressed", grids, linears) is None
    assert not (tmp_path / "model-compressed").exists()
    [warning] = [r.getMessage() for r in caplog.records if r.name == "lp_prune.tracking.quantized_checkpoint"]
    assert skipped in warning
