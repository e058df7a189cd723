"""Run directory: atomic writes, JSON, bit-packed masks, weights, status."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from lp_prune.errors import UserError
from lp_prune.storage.files import atomic_output, atomic_write_text, read_json, write_json
from lp_prune.tracking.run_dir import RunDirectory
from lp_prune.tracking.saved_masks import iter_masks, load_masks, mask_names, packed_masks, save_masks

ODD_SHAPES = {
    "model.layers.0.self_attn.q_proj": (3, 5),
    "model.layers.0.mlp.down_proj": (7, 13),
    "model.layers.1.self_attn.k_proj": (1, 1),
    "model.layers.1.mlp.up_proj": (64, 640),
}


def random_masks(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.rand(shape, generator=generator) < 0.5 for name, shape in ODD_SHAPES.items()}


def leftover_temp_files(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.name.endswith(".tmp")]


# --- atomic writes ------------------------------------------------------------------------------------


def test_atomic_write_replaces_content_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "note.txt"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert leftover_temp_files(tmp_path) == []


def test_failed_serializer_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    write_json(target, {"ppl": 1.0})
    with pytest.raises(TypeError):
        write_json(target, {"ppl": object()})
    assert read_json(target) == {"ppl": 1.0}
    assert leftover_temp_files(tmp_path) == []


def test_failure_midway_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "note.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert leftover_temp_files(tmp_path) == []


def test_failed_safetensors_write_keeps_old_masks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_masks(tmp_path, random_masks(0))

    written = []

    def fail_after_half_the_bytes(data: object) -> None:
        written.append(data)
        if len(written) > 2:  # length prefix and header went out; the disk fills during the tensors
            raise OSError("disk full")

    class FillingFile(io.FileIO):
        def write(self, data: object) -> int:
            fail_after_half_the_bytes(data)
            return super().write(data)

    def filling(path: object, mode: str) -> FillingFile:
        return FillingFile(path, mode)

    monkeypatch.setattr("lp_prune.storage.safetensors_writer.open", filling, raising=False)
    with pytest.raises(OSError, match="disk full"):
        save_masks(tmp_path, random_masks(1))
    monkeypatch.undo()
    assert all(torch.equal(load_masks(tmp_path)[n], m) for n, m in random_masks(0).items())
    assert leftover_temp_files(tmp_path) == []


# --- JSON ---------------------------------------------------------------------------------------------


def test_write_json_converts_non_finite_and_array_scalars(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    write_json(
        target,
        {
            "nan": float("nan"),
            "inf": math.inf,
            "neg_inf": -math.inf,
            "torch_scalar": torch.tensor(2.5),
            "torch_nan": torch.tensor(float("nan")),
            "numpy_int": np.int64(7),
            "numpy_float": np.float32(0.5),
            "vector": np.array([1.0, np.nan]),
            "path": tmp_path,
            "nested": {"tuple": (1, 2)},
        },
    )
    text = target.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "nan": None,
        "inf": None,
        "neg_inf": None,
        "torch_scalar": 2.5,
        "torch_nan": None,
        "numpy_int": 7,
        "numpy_float": 0.5,
        "vector": [1.0, None],
        "path": str(tmp_path),
        "nested": {"tuple": [1, 2]},
    }
    assert list(json.loads(text)) == ["nan", "inf", "neg_inf", "torch_scalar", "torch_nan", "numpy_int",
                                      "numpy_float", "vector", "path", "nested"]  # fmt: skip


def test_read_json_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing\.json"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match=r"bad\.json"):
        read_json(tmp_path / "bad.json")


# --- masks --------------------------------------------------------------------------------------------


def test_masks_round_trip_exactly(tmp_path: Path) -> None:
    masks = random_masks()
    save_masks(tmp_path, masks)
    loaded = load_masks(tmp_path)
    assert list(loaded) == list(masks)
    for name, mask in masks.items():
        assert loaded[name].dtype == torch.bool
        assert torch.equal(loaded[name], mask)


def test_packed_size_is_one_bit_per_position(tmp_path: Path) -> None:
    save_masks(tmp_path, random_masks())
    for name, packed, shape in packed_masks(tmp_path):
        assert shape == ODD_SHAPES[name]
        assert packed.dtype == torch.uint8
        assert packed.numel() == math.ceil(math.prod(shape) / 8)


def test_file_follows_the_documented_format(tmp_path: Path) -> None:
    """The numpy-only recipe in the module docstring reads the file."""
    masks = random_masks()
    save_masks(tmp_path, masks)
    with safe_open(tmp_path / "masks.safetensors", framework="np") as handle:
        shapes = json.loads(handle.metadata()["lp_prune.mask_shapes"])
        for name, shape in shapes.items():
            bits = np.unpackbits(handle.get_tensor(name), count=int(np.prod(shape)), bitorder="little")
            assert np.array_equal(bits.astype(bool).reshape(shape), masks[name].numpy())


def test_packed_bits_give_iou_by_popcount(tmp_path: Path) -> None:
    name = "model.layers.0.mlp.down_proj"
    save_masks(tmp_path / "a", random_masks(0))
    save_masks(tmp_path / "b", random_masks(1))
    [(_, packed_a, _)] = list(packed_masks(tmp_path / "a", [name]))
    [(_, packed_b, _)] = list(packed_masks(tmp_path / "b", [name]))

    def popcount(packed: torch.Tensor) -> int:
        return int(np.unpackbits(packed.numpy()).sum())  # padding bits are 0: no correction needed

    mask_a, mask_b = random_masks(0)[name], random_masks(1)[name]
    expected = ((mask_a & mask_b).sum() / (mask_a | mask_b).sum()).item()
    assert popcount(packed_a & packed_b) / popcount(packed_a | packed_b) == pytest.approx(expected)


def test_subset_and_streaming(tmp_path: Path) -> None:
    masks = random_masks()
    save_masks(tmp_path, masks)
    wanted = ["model.layers.1.mlp.up_proj", "model.layers.0.self_attn.q_proj"]
    subset = load_masks(tmp_path, names=wanted)
    assert list(subset) == wanted
    assert all(torch.equal(subset[name], masks[name]) for name in wanted)
    assert mask_names(tmp_path) == list(masks)
    assert [name for name, _ in iter_masks(tmp_path)] == list(masks)


def test_unknown_mask_name_is_a_user_error(tmp_path: Path) -> None:
    save_masks(tmp_path, random_masks())
    with pytest.raises(UserError, match="no_such_module"):
        load_masks(tmp_path, names=["no_such_module"])


def test_missing_mask_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"masks\.safetensors"):
        load_masks(tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage that is not safetensors", b"\xff" * 64])
def test_corrupt_mask_file_is_a_user_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "masks.safetensors").write_bytes(content)
    with pytest.raises(UserError, match=r"masks\.safetensors"):
        load_masks(tmp_path)


def test_truncated_mask_file_is_a_user_error(tmp_path: Path) -> None:
    path = save_masks(tmp_path, random_masks())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match=r"masks\.safetensors"):
        load_masks(tmp_path)


def test_safetensors_without_mask_metadata_is_a_user_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3, dtype=torch.uint8)}, tmp_path / "masks.safetensors")
    with pytest.raises(UserError, match="not an lp_prune mask file"):
        load_masks(tmp_path)


def test_masks_must_be_boolean(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_masks(tmp_path, {"w": torch.zeros(2, 2)})


# --- weights ------------------------------------------------------------------------------------------


def test_status_lifecycle(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "run")
    assert run.root.is_dir() and run.status() is None and not run.is_complete()
    run.mark_running()
    assert run.status() == "RUNNING" and not run.is_complete()
    run.mark_complete()
    assert run.status_file.read_text().strip() == "COMPLETE" and run.is_complete()
    assert (run.config.name, run.summary.name, run.masks.name, run.model.name) == (
        "config.yaml",
        "summary.json",
        "masks.safetensors",
        "model",
    )


def test_create_refuses_a_complete_run_unless_overwrite(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "run")
    write_json(run.summary, {"ppl": 3.0})
    save_masks(run, random_masks())
    run.model.mkdir()
    (run.model / "model.safetensors").write_bytes(b"x")
    write_json(run.calibration_record, {"windows": []})
    run.calibration_tokens.write_bytes(b"x")
    run.mark_complete()
    with pytest.raises(UserError, match="complete run"):
        RunDirectory.create(run.root)

    fresh = RunDirectory.create(run.root, overwrite=True)
    assert fresh.status() is None
    assert not fresh.summary.exists() and not fresh.masks.exists() and not fresh.model.exists()
    assert not fresh.calibration_record.exists() and not fresh.calibration_tokens.exists()


def test_create_reuses_an_unfinished_run(tmp_path: Path) -> None:
    run = RunDirectory.create(tmp_path / "run")
    run.mark_running()
    write_json(run.summary, {"partial": True})
    again = RunDirectory.create(run.root)
    assert again.status() == "RUNNING" and read_json(again.summary) == {"partial": True}


def test_create_in_an_unwritable_place_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="a_file"):
        RunDirectory.create(blocker / "run")
    with pytest.raises(UserError, match="a_file"):
        RunDirectory.create(blocker)


def test_open_requires_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nowhere"):
        RunDirectory.open(tmp_path / "nowhere")
    assert RunDirectory.open(tmp_path).root == tmp_path


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_streaming_save_loads_back_with_from_pretrained(tiny_model_dir, tmp_path, dtype):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from lp_prune.tracking import save_model_streaming

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[:, ::2] = 0.0  # a pruned-looking weight
    (path,) = save_model_streaming(model, tmp_path / "model")
    assert path.name == "model.safetensors" and not (tmp_path / "model" / "model.safetensors.index.json").exists()
    stored = load_file(path)  # a valid safetensors file: the library's own reader agrees
    for name, tensor in model.state_dict().items():
        if name in stored:
            assert torch.equal(stored[name], tensor), name
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=dtype)
    for (name, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def _tiny_gemma(dtype: torch.dtype) -> torch.nn.Module:
    from tiny_models import tiny_model

    model = tiny_model("gemma3").to(dtype)  # ties lm_head to the embedding
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[::2] = 0.0
    return model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sharded_save_loads_back_with_from_pretrained(tmp_path, dtype):
    from transformers import AutoModelForCausalLM

    from lp_prune.tracking import load_weights, save_model_streaming, weight_files

    model = _tiny_gemma(dtype)
    embedding_bytes = model.model.embed_tokens.weight.nbytes
    shard_size = embedding_bytes // 2  # the embedding gets a shard of its own; the layers fill several
    folder = tmp_path / "model"
    files = save_model_streaming(model, folder, max_shard_size=shard_size)
    n = len(files)
    assert n > 3 and [f.name for f in files] == [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)]
    assert not (folder / "model.safetensors").exists()

    index = json.loads((folder / "model.safetensors.index.json").read_text())
    stored: dict[str, str] = {}
    state = model.state_dict()
    for file in files:  # every tensor in exactly one shard, and the index says which
        with safe_open(file, framework="pt") as handle:
            names = list(handle.keys())
        assert not set(names) & set(stored)
        stored.update(dict.fromkeys(names, file.name))
        data_bytes = sum(state[name].nbytes for name in names)
        assert data_bytes <= shard_size or len(names) == 1  # a tensor above the limit gets a shard of its own
    assert index["weight_map"] == stored
    assert set(stored) == set(state) - {"lm_head.weight"}  # the tied head is written once, as the embedding
    assert index["metadata"]["total_size"] == sum(state[name].nbytes for name in stored)
    assert weight_files(folder) == files

    loaded = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()  # still tied
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    for name, tensor in load_weights(folder).items():
        assert torch.equal(tensor, state[name]), name


def test_shards_follow_transformers_own_split(tmp_path):
    """Same shard files and the same weight map as save_pretrained with the same max_shard_size."""
    from lp_prune.tracking import save_model_streaming

    model = _tiny_gemma(torch.float32)
    shard_size = 20_000
    save_model_streaming(model, tmp_path / "ours", max_shard_size=shard_size)
    model.save_pretrained(tmp_path / "theirs", max_shard_size=shard_size)
    ours, theirs = (json.loads((tmp_path / d / "model.safetensors.index.json").read_text()) for d in ("ours", "theirs"))
    assert ours["weight_map"] == theirs["weight_map"]
    assert ours["metadata"]["total_size"] == theirs["metadata"]["total_size"]


def test_resaving_replaces_the_other_layout(tmp_path):
    from transformers import AutoModelForCausalLM

    from lp_prune.tracking import save_model_streaming

    model = _tiny_gemma(torch.float32)
    folder = tmp_path / "model"
    save_model_streaming(model, folder, max_shard_size=5_000)
    assert (folder / "model.safetensors.index.json").exists()
    (single,) = save_model_streaming(model, folder)  # default 50GB: one file, and no stale shards or index
    assert sorted(p.name for p in folder.glob("*.safetensors*")) == ["model.safetensors"] == [single.name]
    AutoModelForCausalLM.from_pretrained(folder)
    save_model_streaming(model, folder, max_shard_size=5_000)
    assert not (folder / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("size", "expected"),
    [("50GB", 50 * 10**9), ("5MB", 5 * 10**6), ("2GiB", 2 * 2**30), ("0.5gb", 5 * 10**8), (1234, 1234), ("1234", 1234)],
)
def test_shard_size_parses_like_transformers(size, expected):
    from lp_prune.config import size_in_bytes

    assert size_in_bytes(size) == expected


@pytest.mark.parametrize("size", ["5XB", "", "GB", 0, "0MB", -3, 1.5, True])
def test_bad_shard_size_is_a_config_error(size):
    from lp_prune.config import RunConfig
    from lp_prune.errors import ConfigError

    with pytest.raises(ConfigError, match="save_shard_size"):
        RunConfig(save_shard_size=size).validate()
