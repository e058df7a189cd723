"""The study's claims read from planted tables and planted run directories (no pruning needed)."""

import json
import math
import zlib

import pytest
import torch
import yaml

from lp_prune.analysis.compare import findings as fd
from lp_prune.analysis.compare.differences import paired_difference
from lp_prune.analysis.compare.recipes import recipe_rows, recipe_verdicts
from lp_prune.analysis.result import AnalysisResult
from lp_prune.cli import main
from lp_prune.evaluation.downstream import task_language
from lp_prune.tracking import RunDirectory, save_masks, write_json

# --- C1 -----------------------------------------------------------------------------------------------


def test_c1_holds_when_every_language_is_best_calibrated_on_itself():
    matrix = {
        "dense": {"en": 5.0, "sw": 9.0, "de": 6.0},
        "de": {"en": 8.0, "sw": 30.0, "de": 10.0},
        "en": {"en": 7.0, "sw": 28.0, "de": 12.0},
        "sw": {"en": 9.0, "sw": 20.0, "de": 13.0},
        "all balanced": {"en": 1.0, "sw": 1.0, "de": 1.0},  # not a calibration language: ignored by C1
    }
    found = fd.c1_lowest_perplexity(matrix)
    assert found.verdict == fd.SUPPORTED
    assert "in 3 of 3 (de, en, sw)" in found.evidence
    assert found.details["languages"]["en"]["best_other"] == "de"
    assert "en +14.3%" in found.evidence  # next best on en: de 8.0 vs own 7.0


def test_c1_fails_when_another_calibration_wins():
    matrix = {"en": {"en": 7.0, "sw": 20.0}, "sw": {"en": 6.0, "sw": 22.0}}
    found = fd.c1_lowest_perplexity(matrix)
    assert found.verdict == fd.NOT_SUPPORTED
    assert "in 0 of 2" in found.evidence and "en (own 7.00, sw 6.00)" in found.evidence
    partly = fd.c1_lowest_perplexity({**matrix, "sw": {"en": 6.0, "sw": 19.0}})
    assert partly.verdict == fd.PARTLY
    assert fd.c1_lowest_perplexity({"en": {"en": 7.0}}).verdict == fd.NO_DATA


# --- C3 -----------------------------------------------------------------------------------------------


def test_paired_difference_matches_hand_computation():
    a = {1: 1, 2: 1, 3: 0, 4: 1}
    b = {1: 0, 2: 1, 3: 0, 4: 0, 5: 1}  # item 5 has no partner: left out
    diff = paired_difference(a, b)
    # d = 1, 0, 0, 1: mean 0.5, sample sd sqrt(4 x 0.25 / 3), stderr sd / 2
    assert (diff.mean, diff.n, diff.paired) == (0.5, 4, True)
    assert diff.stderr == pytest.approx(math.sqrt(1 / 3) / 2)
    assert diff.outcome == "within noise"  # 0.5 < 2 x 0.289


def test_c3_paired_gain_and_noise():
    n = 40
    own = {i: 1 for i in range(n)}  # calibrated on en: every en item right
    half = {i: i % 2 for i in range(n)}  # the others: every second
    accuracy = {lang: {"lp_prune_proxy_en": 0.5, "lp_prune_proxy_sw": 0.5} for lang in ("en", "sw", "de")}
    accuracy["en"]["lp_prune_proxy_en"] = 1.0
    items = {lang: {task: dict(half) for task in accuracy[lang]} for lang in accuracy}
    items["en"]["lp_prune_proxy_en"] = own
    found = fd.c3_downstream_gains(accuracy, {}, items, task_language)
    en, sw = found.details["tasks"]["lp_prune_proxy_en"], found.details["tasks"]["lp_prune_proxy_sw"]
    # en: d_i = 1 - mean(half_de, half_sw) = 0 or 1 alternately: mean 0.5, sd = sqrt(40 x 0.25 / 39)
    assert en["mean"] == pytest.approx(0.5) and en["stderr"] == pytest.approx(math.sqrt(10 / 39) / math.sqrt(40))
    assert en["outcome"] == "gain" and en["paired"]
    assert sw["mean"] == 0 and sw["outcome"] == "no difference"
    assert found.verdict == fd.SUPPORTED  # not a consistent gain, as the study says
    assert "Consistent gain: no (1 gain, 1 no difference" in found.evidence


def test_c3_falls_back_to_unpaired_stderrs_without_items():
    accuracy = {"en": {"lp_prune_proxy_en": 0.8}, "sw": {"lp_prune_proxy_en": 0.5}, "de": {"lp_prune_proxy_en": 0.6}}
    stderr = {"en": {"lp_prune_proxy_en": 0.04}, "sw": {"lp_prune_proxy_en": 0.05}, "de": {"lp_prune_proxy_en": 0.05}}
    found = fd.c3_downstream_gains(accuracy, stderr, {}, task_language)
    task = found.details["tasks"]["lp_prune_proxy_en"]
    # 0.8 - 0.55 = 0.25; stderr sqrt(0.04^2 + (0.05^2 + 0.05^2) / 4)
    assert task["mean"] == pytest.approx(0.25) and not task["paired"]
    assert task["stderr"] == pytest.approx(math.sqrt(0.0016 + 0.005 / 4))
    assert found.verdict == fd.NOT_SUPPORTED  # the only task gains: consistent
    assert fd.c3_downstream_gains({}, {}, {}, task_language).verdict == fd.NO_DATA


# --- C4 -----------------------------------------------------------------------------------------------


def _iou(cross, floor=None):
    return {"projection_layer": cross, "floor_projection_layer": floor or {}, "chance": 1 / 3}


def test_c4_needs_the_same_language_floor():
    found = fd.c4_least_consistent_masks(_iou({"q_proj": [0.8, 0.8, 0.8], "o_proj": [0.7, 0.8, 0.9]}))
    assert found.verdict == fd.NO_DATA
    assert "No same-language floor" in found.evidence and "o_proj 0.800" in found.evidence


def test_c4_ranks_projections_by_their_gap_to_the_floor():
    cross = {"q_proj": [0.80, 0.80, 0.80], "o_proj": [0.50, 0.70, 0.75], "down_proj": [0.55, 0.70, 0.70]}
    floor = {"q_proj": [0.82, 0.82, 0.82], "o_proj": [0.90, 0.85, 0.85], "down_proj": [0.85, 0.80, 0.80]}
    found = fd.c4_least_consistent_masks(_iou(cross, floor))
    o_proj = found.details["projections"]["o_proj"]
    assert o_proj["gap"] == pytest.approx((0.40 + 0.15 + 0.10) / 3)
    assert o_proj["gap_early"] == pytest.approx(0.40) and o_proj["worst_layers"] == [0, 1, 2]
    assert list(found.details["projections"]) == ["o_proj", "down_proj", "q_proj"]
    assert found.verdict == fd.SUPPORTED
    # The same cross-language IoUs against a floor that o_proj and down_proj barely exceed: q_proj is the
    # least consistent one, and o_proj's low IoU is just what two seeds of one language reach.
    floor = {"q_proj": [0.99, 0.99, 0.99], "o_proj": [0.50, 0.70, 0.75], "down_proj": [0.56, 0.71, 0.71]}
    assert fd.c4_least_consistent_masks(_iou(cross, floor)).verdict == fd.PARTLY
    floor = {"q_proj": [0.99, 0.99, 0.99], "o_proj": [0.50, 0.70, 0.75], "down_proj": [0.55, 0.70, 0.70]}
    cross["k_proj"], floor["k_proj"] = [0.5, 0.5, 0.5], [0.9, 0.9, 0.9]
    assert fd.c4_least_consistent_masks(_iou(cross, floor)).verdict == fd.NOT_SUPPORTED


# --- C2, C5, C6 from analysis.json ----------------------------------------------------------------------


def _analysis(setting, best, spread, low_bin):
    bins = [
        {"low": 0.0, "high": 0.1, "mean_rel_abs_shift": 0.5, **low_bin},
        {
            "low": 0.1,
            "high": 0.4,
            "mean_abs_shift": 0.01,
            "all_neurons_mean_abs_shift": 0.01,
            "mean_rel_abs_shift": 0.1,
        },
        {
            "low": 0.4,
            "high": 1.0,
            "mean_abs_shift": 0.01,
            "all_neurons_mean_abs_shift": 0.01,
            "mean_rel_abs_shift": 0.02,
        },
    ]
    return AnalysisResult(
        model="m",
        languages=["en", "sw"],
        runs=[
            {"key": "r1", "setting": setting, "analysed": True},
            {"key": "r2", "setting": setting, "analysed": False},
        ],
        lape={"runs": {"r1": {"bins": bins}}},
        findings={setting: {"snr_best_calibration": best, "lsar_spread": spread}},
    )


def test_analysis_claims():
    best = {"en": {"last_layer": "en", "mean_over_layers": "en"}, "sw": {"last_layer": "en", "mean_over_layers": "sw"}}
    low = {"mean_abs_shift": 0.02, "all_neurons_mean_abs_shift": 0.01}
    analysis = _analysis("s", best, {"specific_cv": 0.3, "agnostic_cv": 0.05}, low)
    c2, c5, c6 = fd.analysis_findings(analysis)["s"]
    assert (c2.claim, c2.verdict) == ("C2", fd.PARTLY) and "in 1 of 2 (en); not in sw (best: en)" in c2.evidence
    assert (c5.claim, c5.verdict) == ("C5", fd.SUPPORTED) and "agnostic 0.050, language-specific 0.300" in c5.evidence
    assert (c6.claim, c6.verdict) == ("C6", fd.SUPPORTED) and "0.0200 vs 0.0100" in c6.evidence
    assert "0.500, 0.100, 0.020" in c6.evidence
    low = {"mean_abs_shift": 0.005, "all_neurons_mean_abs_shift": 0.01}
    analysis = _analysis("s", best, {"specific_cv": 0.1, "agnostic_cv": 0.2}, low)
    _, c5, c6 = fd.analysis_findings(analysis)["s"]
    assert c5.verdict == fd.NOT_SUPPORTED and c6.verdict == fd.NOT_SUPPORTED
    analysis = _analysis("s", best, {"specific_cv": None, "agnostic_cv": None}, low)  # one run: NaN -> null
    assert fd.analysis_findings(analysis)["s"][1].verdict == fd.NO_DATA


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


def _plant_run(path, lang, seed, perplexity, proxy_items, prune_extra=None):
    run = RunDirectory.create(path)
    config = {
        "model": {"name": "m"},
        "data": {"seed": seed, "source": "packaged"},
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


def _plant_study(root, own_best: bool):
    languages = ("de", "en", "sw")
    for lang, seed in [("de", 0), ("en", 0), ("en", 1), ("sw", 0)]:
        perplexity = {
            e: (10.0 if e == lang else 12.0) if own_best else (12.0 if e == lang else 10.0) for e in languages
        }
        perplexity = {e: v + 0.1 * seed for e, v in perplexity.items()}  # seeds differ a little
        items = {
            f"lp_prune_proxy_{e}": [int(i % 2 == 0 or (own_best and e == lang)) for i in range(40)] for e in languages
        }
        _plant_run(root / f"{lang}-s{seed}", lang, seed, perplexity, items)
    return root


def _report_verdicts(out):
    tables = json.loads((out / "tables.json").read_text())
    return {f["claim"]: f for f in tables["findings"][SETTING]}, tables


def test_compare_opens_with_the_findings_of_planted_runs(tmp_path, capsys):
    root = _plant_study(tmp_path / "holds", own_best=True)
    # An analysis.json beside the runs: C2, C5, C6 come from it.
    best = {lang: {"last_layer": lang, "mean_over_layers": lang} for lang in ("de", "en", "sw")}
    analysis = _analysis(
        SETTING,
        best,
        {"specific_cv": 0.3, "agnostic_cv": 0.05},
        {"mean_abs_shift": 0.02, "all_neurons_mean_abs_shift": 0.01},
    )
    (root / "analysis").mkdir()
    write_json(root / "analysis" / "analysis.json", analysis.to_json())
    assert main(["compare", str(root), "--out", str(tmp_path / "r1"), "--no_wandb"]) == 0
    verdicts, tables = _report_verdicts(tmp_path / "r1")
    assert verdicts["C1"]["verdict"] == fd.SUPPORTED and "in 3 of 3" in verdicts["C1"]["evidence"]
    assert verdicts["C2"]["verdict"] == fd.SUPPORTED and verdicts["C5"]["verdict"] == fd.SUPPORTED
    assert verdicts["C3"]["verdict"] == fd.NOT_SUPPORTED  # planted: own language always gains
    assert verdicts["C4"]["verdict"] == fd.SUPPORTED
    assert list(verdicts["C4"]["details"]["projections"])[:2] in (["o_proj", "down_proj"], ["down_proj", "o_proj"])
    # The two English seeds are repeats, not duplicates: one row, and the floor of the IoU.
    assert list(tables["perplexity"][SETTING]) == ["de", "en", "sw"]
    assert tables["perplexity"][SETTING]["en"]["en"] == pytest.approx(10.05)
    assert set(tables["iou"][SETTING]["pairs"]) == {"de-en", "de-sw", "en-sw"}
    assert set(tables["iou"][SETTING]["floor"]) == {"en"}
    report = (tmp_path / "r1" / "report.md").read_text()
    assert report.index("The study's findings") < report.index("### Perplexity")
    assert "**C1 — supported.**" in report
    assert "C4 supported" in capsys.readouterr().out

    root = _plant_study(tmp_path / "fails", own_best=False)
    assert main(["compare", str(root), "--out", str(tmp_path / "r2"), "--no_wandb"]) == 0
    verdicts, _ = _report_verdicts(tmp_path / "r2")
    assert verdicts["C1"]["verdict"] == fd.NOT_SUPPORTED and "in 0 of 3" in verdicts["C1"]["evidence"]
    assert verdicts["C3"]["verdict"] == fd.SUPPORTED  # no gain for the own language
    assert verdicts["C2"]["verdict"] == fd.NO_DATA and "lp-prune analyze" in verdicts["C2"]["evidence"]


def test_compare_reads_an_analysis_given_by_path(tmp_path, capsys):
    root = _plant_study(tmp_path / "runs", own_best=True)
    best = {"en": {"last_layer": "sw", "mean_over_layers": "sw"}}
    path = tmp_path / "elsewhere.json"
    write_json(
        path,
        _analysis(
            SETTING,
            best,
            {"specific_cv": 0.1, "agnostic_cv": 0.2},
            {"mean_abs_shift": 0.0, "all_neurons_mean_abs_shift": 0.01},
        ),
    )
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
    assert row["target_change"] == pytest.approx(0.02) and row["keeps_target_cuts_others"]
