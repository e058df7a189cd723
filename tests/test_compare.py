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


def _iou_table(floor: bool) -> dict:
    """compare's IoU table of one setting: two languages, two layers, o_proj and down_proj only."""
    table = {
        "languages": ["en", "sw"],
        "chance": 1 / 3,
        "projection_layer": {"o_proj": [0.74, 0.78], "down_proj": [0.80, 0.82]},
        "pair_projection": {"en-sw": {"o_proj": 0.76, "down_proj": 0.81}},
    }
    if floor:
        table["floor"] = {"en": {"o_proj": 0.79, "down_proj": 0.815}, "sw": {"o_proj": 0.78, "down_proj": 0.82}}
        table["floor_projection_layer"] = {"o_proj": [0.77, 0.80], "down_proj": [0.81, 0.82]}
    return table


def _drawn_figures(monkeypatch) -> list:
    from lp_prune.analysis.compare import plots

    figures: list = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    return figures


def test_iou_per_layer_draws_the_same_language_floor_beside_chance(monkeypatch, tmp_path):
    from lp_prune.analysis.compare.plots import iou_per_layer

    figures = _drawn_figures(monkeypatch)
    iou_per_layer(_iou_table(floor=True), "t", tmp_path / "x.png")
    iou_per_layer(_iou_table(floor=False), "t", tmp_path / "y.png")
    (with_floor,), (without,) = (fig.axes for fig in figures)
    dotted = [line.get_ydata().tolist() for line in with_floor.get_lines() if line.get_linestyle() == ":"]
    assert [0.77, 0.80] in dotted and [0.81, 0.82] in dotted
    assert any("same-language floor" in text.get_text() for text in with_floor.get_legend().get_texts())
    assert not [line for line in without.get_lines() if line.get_linestyle() == ":"]


def test_pair_heatmaps_fit_the_colour_scale_to_the_values_shown(monkeypatch, tmp_path):
    from lp_prune.analysis.compare.plots import iou_language_heatmaps

    figures = _drawn_figures(monkeypatch)
    iou_language_heatmaps(_iou_table(floor=True), "t", tmp_path / "x.png")
    (fig,) = figures
    images = [image for ax in fig.axes for image in ax.get_images()]
    assert {(image.norm.vmin, image.norm.vmax) for image in images} == {(0.76, 0.82)}
    assert images[0].get_array()[0, 0] == pytest.approx(0.79)  # diagonal: the language's floor
    assert "fitted to the values shown: 0.760-0.820" in fig.get_suptitle()


def test_iou_table_puts_the_same_language_floor_beside_chance():
    from lp_prune.analysis.compare.report import iou_rows

    header, rows = iou_rows(_iou_table(floor=True))
    assert header[-1] == "same-language floor"
    assert rows[0] == ["o_proj", "0.760", "0.740", "0.780", "0.785"]
    assert "same-language floor" not in iou_rows(_iou_table(floor=False))[0]


def test_local_metric_strips_wrap_to_rows_of_four_and_say_their_inputs_differ(monkeypatch, tmp_path):
    from lp_prune.analysis.compare.mask_iou import PROJECTIONS
    from lp_prune.analysis.compare.plots import layer_metric_lines

    figures = _drawn_figures(monkeypatch)
    per_proj = {proj: {"en": [10.0, 12.0], "sw": [11.0, 9.0]} for proj in PROJECTIONS}
    layer_metric_lines(per_proj, "snr_db", "t", tmp_path / "x.png")
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == list(PROJECTIONS)
    assert len({ax.get_subplotspec().rowspan.start for ax in panels}) == 2  # 7 panels: rows of 4 and 3
    assert "measured on each run's own calibration inputs; not comparable across lines" in fig.get_suptitle()


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
