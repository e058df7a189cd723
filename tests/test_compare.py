"""Cross-run comparison: IoU maths, the tables, figures and the analysis W&B run."""

import json
import math

import pytest
import torch

from lp_prune.analysis.compare.tables import best_per_column
from lp_prune.analysis.iou import chance_iou, mask_iou, packed_iou
from lp_prune.cli import main
from lp_prune.config import RunConfig
from lp_prune.tracking import pack_mask
from wandb_offline import closed_log, find_offline_runs, read_history


def test_iou_matches_hand_computation():
    a = torch.tensor([[1, 1, 0, 0, 1], [0, 1, 1, 0, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 0, 0, 1, 1], [0, 1, 0, 0, 1]], dtype=torch.bool)
    # intersection: (0,0) (0,4) (1,1) = 3; union: a has 5, b has 5, so 5 + 5 - 3 = 7
    assert mask_iou(a, b) == pytest.approx(3 / 7)
    assert packed_iou(pack_mask(a), pack_mask(b)) == pytest.approx(3 / 7)


def test_packed_iou_equals_unpacked_on_random_masks():
    g = torch.Generator().manual_seed(0)
    for shape in [(3, 5), (7, 13), (64, 40)]:
        a, b = torch.rand(shape, generator=g) < 0.5, torch.rand(shape, generator=g) < 0.3
        assert packed_iou(pack_mask(a), pack_mask(b)) == pytest.approx(mask_iou(a, b))


def test_chance_level_of_random_masks():
    assert chance_iou(0.5, 0.5) == pytest.approx(1 / 3)
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(200, 200, generator=g) < 0.5, torch.rand(200, 200, generator=g) < 0.5
    assert mask_iou(a, b) == pytest.approx(1 / 3, abs=0.01)


def test_accuracy_matrix_from_downstream_results(tmp_path):
    from lp_prune.analysis.compare.tables import accuracy_matrix
    from lp_prune.analysis.runs import Run
    from lp_prune.tracking.summary import RunSummary

    def run(lang, acc_en, acc_sw):
        downstream = {
            "pruned": {"proxy_en": {"acc": acc_en}, "proxy_sw": {"acc": acc_sw}},
            "dense": {"proxy_en": {"acc": 0.9}, "proxy_sw": {"acc": 0.6}},
        }
        summary = RunSummary(
            model="m", method="wanda", pattern="unstructured", target_sparsity=0.5, calibration_language=lang,
            nsamples=4, seqlen=8, modules=[], downstream=downstream,
        )  # fmt: skip
        return Run(tmp_path, RunConfig(), summary)

    matrix = accuracy_matrix([run("en", 0.8, 0.4), run("sw", 0.7, 0.5)])
    assert matrix == {
        "dense": {"proxy_en": 0.9, "proxy_sw": 0.6},
        "en": {"proxy_en": 0.8, "proxy_sw": 0.4},
        "sw": {"proxy_en": 0.7, "proxy_sw": 0.5},
    }
    assert best_per_column(matrix, higher_is_better=True) == {"proxy_en": "en", "proxy_sw": "sw"}


def test_best_per_column_ignores_dense_row():
    matrix = {"dense": {"en": 1.0, "sw": 1.0}, "en": {"en": 5.0, "sw": 9.0}, "sw": {"en": 7.0, "sw": 6.0}}
    assert best_per_column(matrix) == {"en": "en", "sw": "sw"}


@pytest.fixture(scope="module")
def three_runs(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    for lang in ("en", "sw", "de"):
        args = [
            "run", "--model.name", str(tiny_model_dir), "--out", str(root / lang),
            "--data.calibration_language", lang, "--data.nsamples", "4", "--data.seqlen", "32",
            "--data.eval_windows", "2", "--data.eval_seqlen", "32", "--data.eval_languages", "[en, sw, de]",
            "--wandb.group", "g",
        ]  # fmt: skip
        assert main(args) == 0
    return root


def test_compare_three_runs_builds_tables_figures_and_wandb_run(three_runs, tmp_path):
    out = tmp_path / "report"
    assert main(["compare", str(three_runs), "--out", str(out)]) == 0
    tables = json.loads((out / "tables.json").read_text())
    (setting,) = tables["perplexity"]
    matrix = tables["perplexity"][setting]
    assert list(matrix) == ["dense", "de", "en", "sw"]
    assert all(
        set(row) == {"en", "sw", "de"} and all(math.isfinite(v) for v in row.values()) for row in matrix.values()
    )
    iou = tables["iou"][setting]
    assert set(iou["pairs"]) == {"de-en", "de-sw", "en-sw"}
    assert iou["chance"] == pytest.approx(1 / 3, abs=0.01)
    assert set(iou["projection_layer"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert all(len(v) == 3 and all(0 <= x <= 1 for x in v) for v in iou["projection_layer"].values())
    disagreement = tables["disagreement"][setting]
    assert set(disagreement) == set(iou["projection_layer"])
    assert all(0 < v["rate"] < 1 for v in disagreement.values())
    pngs = list(out.glob("*.png"))
    assert len(pngs) >= 5 and all(p.stat().st_size > 1000 for p in pngs)
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Perplexity" in html
    assert "| calibration" in (out / "report.md").read_text()
    (analysis,) = find_offline_runs(out / "wandb")
    keys = {k for row in read_history(closed_log(analysis)) for k in row}
    assert any(k.startswith("perplexity/") for k in keys) and any(k.startswith("iou/") for k in keys)


def test_compare_refuses_mixed_models_and_unfinished_runs(three_runs, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for name in ("status", "config.yaml", "masks.safetensors"):
        (other / name).write_bytes((three_runs / "en" / name).read_bytes())
    summary = json.loads((three_runs / "en" / "summary.json").read_text())
    (other / "summary.json").write_text(json.dumps({**summary, "model": "another-model"}))
    assert main(["compare", str(three_runs / "en"), str(other), "--no_wandb"]) == 2
    assert "runs of different models" in capsys.readouterr().err
    (other / "status").write_text("RUNNING\n")
    assert main(["compare", str(other), "--no_wandb"]) == 2
    assert "not a complete run" in capsys.readouterr().err
    (other / "status").write_text("COMPLETE\n")
    (other / "masks.safetensors").write_bytes(b"truncated")
    (other / "summary.json").write_text(json.dumps({**summary, "calibration_language": "zh"}))
    assert main(["compare", str(three_runs / "en"), str(other), "--no_wandb"]) == 2
    assert "masks.safetensors" in capsys.readouterr().err
