"""The study's claims read from planted tables and planted run directories (no pruning needed)."""

import itertools
import json
import math
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from lp_prune.analysis.compare import findings as fd
from lp_prune.analysis.compare.differences import paired_difference
from lp_prune.analysis.compare.recipes import recipe_rows, recipe_verdicts
from lp_prune.analysis.result import AnalysisResult
from lp_prune.cli import main
from lp_prune.evaluation.downstream import task_language
from lp_prune.storage.files import write_json
from lp_prune.tracking import RunDirectory, save_masks

# --- C3 -----------------------------------------------------------------------------------------------


def test_paired_difference_matches_hand_computation():
    a = {1: 1, 2: 1, 3: 0, 4: 1}
    b = {1: 0, 2: 1, 3: 0, 4: 0, 5: 1}  # item 5 has no partner: left out
    diff = paired_difference(a, b)
    # d = 1, 0, 0, 1: mean 0.5, sample sd sqrt(4 x 0.25 / 3), stderr sd / 2
    assert (diff.mean, diff.n, diff.paired) == (0.5, 4, True)
    assert diff.stderr == pytest.approx(math.sqrt(1 / 3) / 2)
    assert diff.outcome == "within noise"  # 0.5 < 2 x 0.289


def test_c3_falls_back_to_unpaired_stderrs_without_items():
    from lp_prune.analysis.compare.claims_downstream import c3_downstream_gains
    from lp_prune.analysis.compare.targets import TargetRows

    scores = {"en": (0.8, 0.04), "sw": (0.5, 0.05), "de": (0.6, 0.05)}  # one draw each, no per-item scores
    rows = {lang: [_Row(lang, {"lp_prune_proxy_en": {"acc": a, "acc_stderr": se}})] for lang, (a, se) in scores.items()}
    found = c3_downstream_gains(TargetRows(rows, "packaged", []), task_language)
    task = found.details["cells"]["lp_prune_proxy_en"]
    # 0.8 - 0.55 = 0.25; stderr sqrt(0.04^2 + (0.05^2 + 0.05^2) / 4)
    assert task["effect"] == pytest.approx(0.25) and not task["paired"]
    assert task["se"] == pytest.approx(math.sqrt(0.0016 + 0.005 / 4))
    # the gain lies beyond the margin on item noise alone (one draw per row), and the evidence says so
    assert found.verdict == fd.NOT_SUPPORTED and "item noise only" in found.evidence
    empty = TargetRows({lang: [_Row(lang, {})] for lang in scores}, "packaged", [])
    assert c3_downstream_gains(empty, task_language).verdict == fd.NO_DATA


class _Row:
    """A target-language run as C3 reads it: its row labels and its downstream results."""

    def __init__(self, lang, pruned):
        self.recipe = self.target_language = lang
        self.source = "packaged"
        self.path = Path(f"/planted/{lang}")
        self.summary = SimpleNamespace(downstream={"pruned": pruned})


# --- C2, C5, C6 from analysis.json ----------------------------------------------------------------------


def _analysis(root, setting, own_best: bool, low_excess: float) -> AnalysisResult:
    """An analysis.json of the planted runs in `root`: own-language SNR and specific-error margins (or
    their opposite), the agnostic error alike for every calibration, and the LAPE lowest bin."""
    entries, snr, lsar, lape = [], {}, {}, {}
    languages = ("de", "en", "sw")
    for index, folder in enumerate(sorted(p for p in root.iterdir() if (p / "summary.json").exists())):
        lang, seed = folder.name.split("-s")
        key = folder.name
        entries.append(
            {"key": key, "setting": setting, "recipe": lang, "calibration_language": lang, "target_language": lang,
             "source": "packaged", "calibration_seed": [int(seed), 0], "analysed": True}
        )  # fmt: skip
        sign = 1 if own_best else -1
        jitter = 0.001 * int(seed) + 0.0001 * index
        snr[key] = {e: [5.0, 20.0 + (sign * 3.0 if e == lang else 0.0) + jitter] for e in languages}
        lsar[key] = {
            "languages": {
                e: {"specific": [0.3 - (sign * 0.05 if e == lang else 0) + jitter] * 2, "agnostic": [0.5 + jitter] * 2}
                for e in languages
            }
        }
        excess = low_excess + 0.001 * index
        lape[key] = {
            "bins": [{"low": 0.0, "high": 0.1, "mean_abs_shift": 0.01 + excess, "all_neurons_mean_abs_shift": 0.01}]
        }
    return AnalysisResult(
        model="m", languages=list(languages), runs=entries, snr_db=snr, lsar={"runs": lsar}, lape={"runs": lape},
        findings={},
    )  # fmt: skip


# --- recipes --------------------------------------------------------------------------------------------


def test_recipe_rows_against_target_language_calibration():
    perplexity = {
        "en": {"en": 10.0, "sw": 40.0, "de": 20.0},
        "sw": {"en": 14.0, "sw": 25.0, "de": 24.0},
        "all balanced": {"en": 10.4, "sw": 32.0, "de": 16.0},
        "sw generated": {"en": 15.0, "sw": 30.0, "de": 25.0},
    }
    accuracy = {"en": {"lp_prune_proxy_en": 0.5}, "all balanced": {"lp_prune_proxy_en": 0.6}}
    stderr = {"en": {"lp_prune_proxy_en": 0.05}, "all balanced": {"lp_prune_proxy_en": 0.05}}
    items = {
        "en": {"lp_prune_proxy_en": {i: int(i < 50) for i in range(100)}},
        "all balanced": {"lp_prune_proxy_en": {i: int(i < 60) for i in range(100)}},  # 10 more right, none lost
    }
    rows = recipe_rows(perplexity, accuracy, stderr, items, task_language)
    assert [(r.target, r.recipe) for r in rows] == [
        ("en", "en"),
        ("en", "all balanced"),
        ("sw", "sw"),
        ("sw", "all balanced"),
        ("sw", "sw generated"),
    ]
    balanced = rows[1]
    assert balanced.target_change == pytest.approx(0.04)
    # others: sqrt(32 x 16) / sqrt(40 x 20) - 1
    assert balanced.others_change == pytest.approx(math.sqrt(32 * 16) / math.sqrt(40 * 20) - 1)
    assert balanced.keeps_target_cuts_others
    # paired: 10 items of 100 gained: mean 0.1, sd sqrt((10 x 0.81 + 90 x 0.01) / 99), stderr sd / 10
    assert balanced.vs_target.mean == pytest.approx(0.1)
    assert balanced.vs_target.stderr == pytest.approx(math.sqrt((10 * 0.81 + 90 * 0.01) / 99) / 10)
    assert balanced.beats_target_downstream  # 0.1 > 2 x 0.030
    assert not rows[4].keeps_target_cuts_others  # generated sw: target 20% worse
    lines = recipe_verdicts(rows)
    assert lines[0].startswith("en:") and "all balanced" in lines[0]
    assert lines[1].startswith("sw:") and "falls by 10% or more: none;" in lines[1]  # sw 32 vs 25: +28%


# --- planted run directories through `lp-prune compare` ------------------------------------------------

SETTING = "wanda unstructured s=0.5 n=4x32"
MODULES = [
    f"model.layers.{i}.{part}" for i in range(3) for part in ("self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj")
]


def _masks(lang: str, seed: int) -> dict[str, torch.Tensor]:
    """A shared base mask per module; o_proj / down_proj redrawn per language (most in layer 0), a little
    noise per seed everywhere: languages disagree on o_proj and down_proj far beyond the seed floor."""
    masks = {}
    for index, name in enumerate(MODULES):
        base = torch.rand(32, 32, generator=torch.Generator().manual_seed(index)) < 0.5
        languages = torch.Generator().manual_seed(zlib.crc32(f"{lang}-{index}".encode()))
        seeds = torch.Generator().manual_seed(zlib.crc32(f"{lang}-{seed}-{index}".encode()))
        share = 0.02 if "q_proj" in name else (0.6 if ".0." in name else 0.3)
        redraw = torch.rand(32, 32, generator=languages) < share
        mask = torch.where(redraw, torch.rand(32, 32, generator=languages) < 0.5, base)
        noise = torch.rand(32, 32, generator=seeds) < 0.02
        masks[name] = torch.where(noise, torch.rand(32, 32, generator=seeds) < 0.5, mask)
    return masks


def _plant_run(path, lang, seed, perplexity, proxy_items, prune_extra=None, source="packaged"):
    run = RunDirectory.create(path)
    config = {
        "model": {"name": "m"},
        "data": {"seed": seed, "source": source},
        "prune": prune_extra or {},
        "seed": 0,
    }
    run.config.write_text(yaml.safe_dump(config))
    downstream = {
        task: {
            "acc": sum(scores) / len(scores),
            "acc_stderr": 0.05,
            "items": {"ids": list(range(len(scores))), "acc": scores},
        }
        for task, scores in proxy_items.items()
    }
    summary = {
        "model": "m",
        "method": "wanda",
        "pattern": "unstructured",
        "target_sparsity": 0.5,
        "nsamples": 4,
        "seqlen": 32,
        "seed": 0,
        "calibration_language": lang,
        "perplexity": {"pruned": perplexity},
        "downstream": {"pruned": downstream},
        "modules": [{"module": m, "layer": int(m.split(".")[2]), "snr_db": 10.0, "rel_error": 0.1} for m in MODULES],
    }
    write_json(run.summary, summary)
    save_masks(run.root, _masks(lang, seed))
    run.mark_complete()


def _plant_study(root, own_best: bool, source: str = "packaged"):
    languages = ("de", "en", "sw")
    for lang, seed in itertools.product(languages, (0, 1)):  # every language with two draws
        perplexity = {
            e: (10.0 if e == lang else 12.0) if own_best else (12.0 if e == lang else 10.0) for e in languages
        }
        perplexity = {e: v + 0.1 * seed for e, v in perplexity.items()}  # seeds differ a little
        items = {
            f"lp_prune_proxy_{e}": [int(i % 2 == 0 or (own_best and e == lang)) for i in range(400)] for e in languages
        }
        _plant_run(root / f"{lang}-s{seed}", lang, seed, perplexity, items, source=source)
    return root


def _report_verdicts(out):
    tables = json.loads((out / "tables.json").read_text())
    return {f["claim"]: f for f in tables["findings"][SETTING]}, tables


def test_compare_opens_with_the_findings_of_planted_runs(tmp_path, capsys):
    root = _plant_study(tmp_path / "holds", own_best=True)
    # An analysis.json beside the runs: C2, C5, C6 come from it.
    analysis = _analysis(root, SETTING, own_best=True, low_excess=0.01)
    (root / "analysis").mkdir()
    write_json(root / "analysis" / "analysis.json", analysis.to_json())
    assert main(["compare", str(root), "--out", str(tmp_path / "r1"), "--no_wandb"]) == 0
    verdicts, tables = _report_verdicts(tmp_path / "r1")
    assert verdicts["C1"]["verdict"] == fd.SUPPORTED and "holds in 3 of 3 languages" in verdicts["C1"]["evidence"]
    assert verdicts["C2"]["verdict"] == fd.SUPPORTED and verdicts["C5"]["verdict"] == fd.SUPPORTED
    assert verdicts["C3"]["verdict"] == fd.NOT_SUPPORTED  # planted: own language always gains
    assert verdicts["C4"]["verdict"] == fd.SUPPORTED
    assert list(verdicts["C4"]["details"]["projections"])[:2] in (["o_proj", "down_proj"], ["down_proj", "o_proj"])
    # Two seeds of a language are repeats, not duplicates: one row, and the floor of the IoU.
    assert list(tables["perplexity"][SETTING]) == ["de", "en", "sw"]
    assert tables["perplexity"][SETTING]["en"]["en"] == pytest.approx(10.05)
    assert set(tables["iou"][SETTING]["pairs"]) == {"de-en", "de-sw", "en-sw"}
    assert set(tables["iou"][SETTING]["floor"]) == {"de", "en", "sw"}
    report = (tmp_path / "r1" / "report.md").read_text()
    assert report.index("The study's findings") < report.index("### Perplexity")
    assert "**C1 — supported.**" in report
    assert "C4 supported" in capsys.readouterr().out

    root = _plant_study(tmp_path / "fails", own_best=False)
    assert main(["compare", str(root), "--out", str(tmp_path / "r2"), "--no_wandb"]) == 0
    verdicts, _ = _report_verdicts(tmp_path / "r2")
    assert verdicts["C1"]["verdict"] == fd.NOT_SUPPORTED and "fails in 3 of 3" in verdicts["C1"]["evidence"]
    assert verdicts["C3"]["verdict"] == fd.SUPPORTED  # no gain for the own language, over 400 items
    assert verdicts["C2"]["verdict"] == fd.NO_DATA and "lp-prune analyze" in verdicts["C2"]["evidence"]


def test_compare_reads_an_analysis_given_by_path(tmp_path, capsys):
    root = _plant_study(tmp_path / "runs", own_best=True)
    path = tmp_path / "elsewhere.json"
    write_json(path, _analysis(root, SETTING, own_best=False, low_excess=-0.01))
    assert main(["compare", str(root), "--out", str(tmp_path / "r"), "--no_wandb", "--analysis", str(path)]) == 0
    verdicts, _ = _report_verdicts(tmp_path / "r")
    assert [verdicts[c]["verdict"] for c in ("C2", "C5", "C6")] == [fd.NOT_SUPPORTED] * 3
    assert main(["compare", str(root), "--no_wandb", "--analysis", str(tmp_path / "none.json")]) == 2
    assert "no analysis.json there" in capsys.readouterr().err
    damaged = {key: value for key, value in json.loads(path.read_text()).items() if key != "findings"}
    write_json(path, {**damaged, "snr": {}})
    assert main(["compare", str(root), "--no_wandb", "--analysis", str(path)]) == 2
    assert f"{path} is not a complete analysis (no findings)" in capsys.readouterr().err
    write_json(path, {**damaged, "findings": {}, "snr": {}})
    assert main(["compare", str(root), "--no_wandb", "--analysis", str(path)]) == 2
    assert "fields no lp_prune analysis has (snr)" in capsys.readouterr().err


def test_recipes_of_planted_runs_get_their_own_rows(tmp_path):
    root = _plant_study(tmp_path / "runs", own_best=True)
    items = {f"lp_prune_proxy_{e}": [1] * 40 for e in ("de", "en", "sw")}
    _plant_run(root / "all-balanced", "all", 0, {"de": 10.2, "en": 10.2, "sw": 10.2}, items, {"statistics": "balanced"})
    assert main(["compare", str(root), "--out", str(tmp_path / "r"), "--no_wandb"]) == 0
    verdicts, tables = _report_verdicts(tmp_path / "r")
    assert list(tables["perplexity"][SETTING]) == ["de", "en", "sw", "all balanced"]
    assert verdicts["C1"]["verdict"] == fd.SUPPORTED  # the mix is no calibration language
    assert set(tables["iou"][SETTING]["pairs"]) == {"de-en", "de-sw", "en-sw"}  # languages only
    recipes = [(r["target"], r["recipe"]) for r in tables["recipes"][SETTING]]
    assert ("en", "all balanced") in recipes and ("en", "en") in recipes
    row = next(r for r in tables["recipes"][SETTING] if r["recipe"] == "all balanced" and r["target"] == "sw")
    assert row["target_change"] == pytest.approx(10.2 / 10.05 - 1) and row["keeps_target_cuts_others"]


def test_the_study_data_source_gets_verdicts_and_mixes_stay_out_of_the_mask_pairs(tmp_path):
    root = _plant_study(tmp_path / "runs", own_best=True, source="mc4")
    items = {f"lp_prune_proxy_{e}": [1] * 40 for e in ("de", "en", "sw")}
    _plant_run(root / "all-s0", "all", 0, {"de": 10.2, "en": 10.2, "sw": 10.2}, items, source="mc4")
    assert main(["compare", str(root), "--out", str(tmp_path / "r"), "--no_wandb"]) == 0
    verdicts, tables = _report_verdicts(tmp_path / "r")
    assert list(tables["perplexity"][SETTING]) == ["de mc4", "en mc4", "sw mc4", "all mc4"]
    assert verdicts["C1"]["verdict"] == fd.SUPPORTED and "Calibration text: mc4." in verdicts["C1"]["evidence"]
    assert set(tables["iou"][SETTING]["pairs"]) == {"de mc4-en mc4", "de mc4-sw mc4", "en mc4-sw mc4"}


def test_the_lape_bin_numbers_keep_every_draw_of_a_language(tmp_path):
    """Two calibration draws of one language are two entries of a setting's LAPE bin shifts, and the
    report's bin means average over both (keyed by language, the last draw would replace the first)."""
    from types import SimpleNamespace

    from lp_prune.analysis.analyze.pipeline import claim_numbers
    from lp_prune.analysis.analyze.report import findings_text
    from lp_prune.analysis.render import fmt

    shifts = {"en-s0": [0.1, 0.2], "en-s1": [0.3, 0.4], "sw-s0": [0.5, 0.6]}
    runs = [SimpleNamespace(path=tmp_path / key, setting="wanda", calibration=key.split("-")[0]) for key in shifts]
    result = AnalysisResult(
        model="tiny",
        languages=["en", "sw"],
        runs=[],
        snr_db={key: {} for key in shifts},
        snr_peak_token_share={key: {} for key in shifts},
        lape={"runs": {key: {"bins": [{"mean_abs_shift": v} for v in values]} for key, values in shifts.items()}},
        findings={},
    )
    result.findings = claim_numbers(result, runs)
    assert result.findings["wanda"]["lape_bins_mean_abs_shift"] == shifts
    line = next(text for text in findings_text(result) if "LAPE neurons' mean" in text)
    assert line.endswith(f"from low to high dense p: {fmt(0.3, 4)}, {fmt(0.4, 4)}.")  # means over all three runs
