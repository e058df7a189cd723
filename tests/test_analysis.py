"""Internal analyses: cumulative SNR, LSAR, LAPE, mask structure (planted structure) and `lp-prune analyze`."""

import copy
import json
import math
import shutil

import pytest
import torch

from lp_prune.analysis.analyze.lape import (
    ActivationCounts,
    language_specific_neurons,
    own_language_shift,
    stack_probabilities,
)
from lp_prune.analysis.analyze.layer_stream import stream_layers
from lp_prune.analysis.analyze.lsar import (
    LanguageSubspace,
    MeanAccumulator,
    SubspaceErrors,
    language_subspace,
    principal_angles,
)
from lp_prune.analysis.analyze.snr import CumulativeSNR
from lp_prune.analysis.disagreement import mask_disagreement
from lp_prune.cli import main
from lp_prune.pruning.registry import capabilities_named
from lp_prune.tracking import pack_mask
from wandb_offline import closed_log, find_offline_runs, iter_records, read_history

# --- cumulative SNR ----------------------------------------------------------------------------------


def test_cumulative_snr_equals_hand_computation():
    snr = CumulativeSNR(n_layers=2)
    dense_a, pruned_a = torch.tensor([[3.0, 4.0]]), torch.tensor([[3.0, 3.0]])  # signal 25, noise 1
    dense_b, pruned_b = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 0.0], [0.0, 2.0]])  # 5, 1
    snr.update(0, dense_a, pruned_a)
    snr.update(0, dense_b, pruned_b)  # streamed: a second batch of the same layer
    snr.update(1, dense_a, dense_a)
    assert snr.db()[0] == pytest.approx(10 * math.log10(30 / 2))
    assert snr.relative_error()[0] == pytest.approx(2 / 30)
    assert snr.db()[1] == math.inf
    assert snr.peak_token_share()[0] == pytest.approx(1 / 2)  # each batch's worst token carries noise 1 of 2
    assert snr.tokens.tolist() == [3, 1]


# --- LSAR ----------------------------------------------------------------------------------------------


def planted_languages(hidden=48, n_languages=6, rank=3, seed=0):
    """Common vector c, a specific subspace U orthogonal to it, language means c + U a_k (sum a_k = 0)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(hidden, rank + 1, generator=g, dtype=torch.float64))
    common, basis = 5.0 * q[:, 0], q[:, 1:]
    coefficients = 3.0 * torch.randn(rank, n_languages, generator=g, dtype=torch.float64)
    coefficients -= coefficients.mean(dim=1, keepdim=True)
    return common, basis, common[:, None] + basis @ coefficients, g


def test_lsar_recovers_planted_subspace_from_streamed_hidden_states():
    common, basis, means, g = planted_languages()
    accumulators = []
    for k in range(means.shape[1]):
        acc = MeanAccumulator(n_layers=1, hidden_size=means.shape[0])
        for _ in range(4):  # batches of noisy hidden states
            acc.update(0, means[:, k] + 0.3 * torch.randn(500, means.shape[0], generator=g, dtype=torch.float64))
        accumulators.append(acc)
    measured = torch.stack([acc.means()[0] for acc in accumulators], dim=1)
    subspace = language_subspace(measured, rank=3)
    assert principal_angles(subspace.basis, basis).max() < 0.05
    assert abs(float(subspace.common @ common / common.norm())) == pytest.approx(1.0, abs=1e-3)
    assert float((subspace.basis.T @ subspace.common).abs().max()) < 1e-10  # specific is orthogonal to common
    assert torch.allclose(subspace.basis.T @ subspace.basis, torch.eye(3, dtype=torch.float64), atol=1e-10)


def test_lsar_rank_defaults_to_languages_minus_one_and_is_checked():
    *_, means, _ = planted_languages(n_languages=4)
    assert language_subspace(means).basis.shape == (48, 3)
    with pytest.raises(ValueError, match="rank"):
        language_subspace(means, rank=4)


def test_lsar_error_parts_add_up_to_total_error():
    _, basis, means, g = planted_languages()
    subspace = language_subspace(means, rank=3)
    errors = SubspaceErrors(n_layers=1)
    dense = torch.randn(64, 48, generator=g, dtype=torch.float64)
    for pruned in (dense + 0.1 * torch.randn(64, 48, generator=g, dtype=torch.float64), 0.5 * dense):
        errors.update(0, subspace, dense, pruned)
    total = float(errors.specific_error[0] + errors.agnostic_error[0])
    assert total == pytest.approx(float(errors.total_error[0]), rel=1e-12)
    assert float(errors.specific_norm[0] + errors.agnostic_norm[0]) == pytest.approx(
        2 * float(dense.square().sum()), rel=1e-12
    )
    # An error that lies entirely in the specific subspace has no agnostic part.
    only_specific = SubspaceErrors(n_layers=1)
    only_specific.update(0, subspace, dense, dense - torch.randn(64, 3, generator=g, dtype=torch.float64) @ basis.T)
    assert float(only_specific.agnostic_error[0]) < 1e-20
    assert only_specific.specific_share()[0] == pytest.approx(1.0)


# --- LAPE ----------------------------------------------------------------------------------------------

LANGS = ["ar", "de", "en", "sw"]


def planted_activations(shuffle: bool, seed: int = 0):
    """2 layers x 500 neurons; background neurons fire equally in all languages, 10 planted ones
    (1% of all) fire for one language only. Returns counts per language and the planted set."""
    g = torch.Generator().manual_seed(seed)
    n_layers, n_neurons, tokens = 2, 500, 3000
    base = 0.05 + 0.35 * torch.rand(n_layers, n_neurons, generator=g)
    probs = base[..., None].repeat(1, 1, len(LANGS))
    planted = {}
    for i, flat in enumerate(torch.randperm(n_layers * n_neurons, generator=g)[:10].tolist()):
        layer, neuron = divmod(flat, n_neurons)
        probs[layer, neuron] = 0.02
        probs[layer, neuron, i % len(LANGS)] = 0.9
        planted[(layer, neuron)] = LANGS[i % len(LANGS)]
    # Bernoulli draws per language: [K, tokens, layers, neurons]
    draws = torch.rand(len(LANGS), tokens, n_layers, n_neurons, generator=g) < probs.permute(2, 0, 1)[:, None]
    if shuffle:  # same tokens, language labels destroyed
        flat = draws.reshape(-1, n_layers, n_neurons)
        draws = flat[torch.randperm(flat.shape[0], generator=g)].reshape(draws.shape)
    counts = {}
    for k, lang in enumerate(LANGS):
        counts[lang] = ActivationCounts(n_layers, n_neurons)
        for batch in draws[k].split(1000):  # streamed in batches
            for layer in range(n_layers):
                counts[lang].update(layer, batch[:, layer])
    return stack_probabilities(counts, LANGS), planted


def test_lape_finds_planted_language_specific_neurons():
    probs, planted = planted_activations(shuffle=False)
    neurons = language_specific_neurons(probs, LANGS)
    found = {
        (layer, neuron): [lang for lang, m in zip(LANGS, member, strict=True) if m]
        for layer, neuron, member in zip(
            neurons.layer.tolist(), neurons.neuron.tolist(), neurons.member.tolist(), strict=True
        )
    }
    assert found == {key: [lang] for key, lang in planted.items()}
    assert float(neurons.entropy.max()) < 0.5 * math.log(len(LANGS))


def test_lape_finds_no_planted_neurons_in_shuffled_activations():
    probs, planted = planted_activations(shuffle=True)
    neurons = language_specific_neurons(probs, LANGS)
    found = set(zip(neurons.layer.tolist(), neurons.neuron.tolist(), strict=True))
    assert not found & set(planted)
    assert float(neurons.entropy.min()) > 0.95 * math.log(len(LANGS))  # what is left is near-uniform


def test_lape_own_language_shift():
    probs, planted = planted_activations(shuffle=False)
    neurons = language_specific_neurons(probs, LANGS)
    pruned = probs.clone()
    pruned[neurons.layer, neurons.neuron] *= 0.5  # pruning halves every language-specific neuron's p
    own = own_language_shift(probs, pruned, neurons)
    assert sorted(own.language) == sorted(planted.values())
    assert torch.allclose(own.shift, -0.5 * own.dense)


# --- mask structure ------------------------------------------------------------------------------------


def test_mask_disagreement_rows_and_columns_by_hand():
    a = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    c = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 0]], dtype=torch.bool)
    result = mask_disagreement([pack_mask(m) for m in (a, b, c)], (2, 4))
    # disputed: (0,1) and (0,3); row 1 agrees everywhere
    assert result.rate == pytest.approx(2 / 8)
    assert result.row_rate.tolist() == pytest.approx([2 / 4, 0.0])
    assert result.col_rate.tolist() == pytest.approx([0.0, 0.5, 0.0, 0.5])
    # pairs differ in: a-b 1, a-c 1, b-c 2 positions
    assert result.pairwise == pytest.approx((1 + 1 + 2) / 3 / 8)
    summary = result.summary(top=1)
    assert summary["top_rows"] == [0] and summary["row_top_share"] == pytest.approx(1.0)


# --- model plumbing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_stream_layers_matches_the_models_own_hidden_states(arch):
    from tiny_models import tiny_model

    dense = tiny_model(arch)
    pruned = copy.deepcopy(dense)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in pruned.modules():
            if isinstance(module, torch.nn.Linear) and module is not pruned.lm_head:
                module.weight.mul_(torch.rand(module.weight.shape, generator=g) < 0.5)
    ids = torch.randint(4, 96, (3, 12), generator=g)
    ids[:, 0] = 1
    expected = [m(input_ids=ids, output_hidden_states=True).hidden_states for m in (dense, pruned)]
    steps = list(stream_layers([dense, pruned], ids.split(2), first_position=1))
    n_layers = dense.config.num_hidden_layers
    assert [s.layer for s in steps] == [*range(n_layers)] * 2  # two batches
    for step in steps[: n_layers - 1]:  # the model's last hidden state has the final norm applied
        for got, states in zip(step.hidden, expected, strict=True):
            assert torch.allclose(got, states[step.layer + 1][:2, 1:].reshape(-1, got.shape[-1]), atol=1e-5)
    mlp = dense.model.layers[0].mlp
    captured = []
    handle = mlp.gate_proj.register_forward_hook(lambda _m, _a, out: captured.append(out))
    try:
        dense(input_ids=ids[:2])
    finally:
        handle.remove()
    expected_positive = (mlp.act_fn(captured[0][:, 1:]) > 0).reshape(-1, mlp.gate_proj.out_features)
    assert torch.equal(steps[0].gate_positive[0], expected_positive)


# --- lp-prune analyze end to end ------------------------------------------------------------------------


def test_analyze_writes_json_figures_and_wandb_run(wanda_runs, tmp_path, capsys):
    out = tmp_path / "analysis"
    args = ["analyze", str(wanda_runs), "--out", str(out), "--languages", "[en, sw, de, zh]"]
    assert main([*args, "--windows", "2", "--seqlen", "24", "--batch_size", "1"]) == 0
    result = json.loads((out / "analysis.json").read_text())
    assert [run["calibration_language"] for run in result["runs"]] == ["de", "en", "sw"]
    assert result["tokens_per_language"] == {lang: 2 * 23 for lang in ("en", "sw", "de", "zh")}  # BOS left out
    for key in ("de", "en", "sw"):
        snr = result["snr_db"][key]
        assert set(snr) == {"en", "sw", "de", "zh"} and all(len(v) == 3 for v in snr.values())
        assert all(math.isfinite(x) for v in snr.values() for x in v)
        pooled = result["lsar"]["runs"][key]["pooled"]
        assert all(0 <= share <= 1 for share in pooled["specific_share"])
        lape = result["lape"]["runs"][key]
        assert set(lape["overlap"]) == {"gate_proj", "up_proj", "down_proj"}
        assert lape["overlap"]["gate_proj"]["all"] == pytest.approx(0.5)  # Wanda prunes half of every row
    assert result["lsar"]["rank"] == 3
    assert result["lape"]["n_neurons"] == 2  # 1% of 3 layers x 64 neurons
    (structure,) = result["mask_structure"].values()
    assert structure["languages"] == ["de", "en", "sw"]
    assert all(len(v) == 3 and all(0 <= x <= 1 for x in v) for v in structure["projection_layer"].values())
    assert result["peak_rss_mb"] > 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 5 and all(p.stat().st_size > 1000 for p in pngs)
    assert "data:image/png;base64," in (out / "analysis.html").read_text()
    assert "Cumulative SNR" in (out / "analysis.md").read_text()
    (run,) = find_offline_runs(out / "wandb")
    keys = {k for row in read_history(closed_log(run)) for k in row}
    assert any(k.startswith("snr/") for k in keys) and any(k.startswith("lsar/") for k in keys)
    assert any(k.startswith("lape/") for k in keys) and any(k.startswith("masks/") for k in keys)
    info = next(r.run for r in iter_records(closed_log(run)) if r.WhichOneof("record_type") == "run")
    assert (info.project, info.run_group, info.job_type) == ("lp_prune", "g", "analyze")  # the runs' group
    printed = capsys.readouterr().out  # the command ends with where everything is
    assert str(out / "analysis.html") in printed and f"wandb sync {run}" in printed


def test_analyze_refuses_sparsegpt_runs_without_saved_model(wanda_runs, tmp_path, capsys):
    run = tmp_path / "sgpt"
    shutil.copytree(wanda_runs / "en", run)
    summary = json.loads((run / "summary.json").read_text())
    sparsegpt = {"method": "sparsegpt", "method_capabilities": capabilities_named("sparsegpt").to_json()}
    (run / "summary.json").write_text(json.dumps({**summary, **sparsegpt}))
    assert main(["analyze", str(run), "--no_wandb"]) == 2
    assert "--save_model true" in capsys.readouterr().err
    assert main(["analyze", str(wanda_runs), "--languages", "[en]", "--no_wandb"]) == 2
    assert "at least two languages" in capsys.readouterr().err


def test_language_subspace_projection_is_idempotent():
    _, _, means, _ = planted_languages()
    subspace: LanguageSubspace = language_subspace(means, rank=2)
    h = torch.randn(5, 48, dtype=torch.float64)
    once = subspace.specific(h)
    assert torch.allclose(subspace.specific(once), once, atol=1e-12)


def test_lsar_figure_titles_each_panel_with_its_own_formula(monkeypatch, tmp_path):
    from lp_prune.analysis.analyze import plots as analyze_plots
    from lp_prune.analysis.result import AnalysisResult

    titles: list[str] = []

    def keep_titles(fig, path):
        titles.extend(ax.get_title() for ax in fig.axes)
        return path

    monkeypatch.setattr(analyze_plots, "save_figure", keep_titles)
    curves = {"specific": [0.1, 0.2], "agnostic": [0.01, 0.02]}
    result = AnalysisResult(
        model="m", languages=["en"], runs=[], findings={}, lsar={"rank": 1, "runs": {"r": {"pooled": curves}}}
    )
    analyze_plots.lsar_errors(result, [{"key": "r", "label": "en"}], "t", tmp_path / "x.png")
    assert titles == ["language-specific: ||P e||² / ||P h||²", "language-agnostic: ||(I - P) e||² / ||(I - P) h||²"]


def _labelled_run(folder, recipe, data_seed, seed=0, method="wanda"):
    """A run as run_labels reads it: its folder name is its key."""
    from types import SimpleNamespace

    config = SimpleNamespace(data=SimpleNamespace(seed=data_seed))
    summary = SimpleNamespace(method=method)
    return SimpleNamespace(
        path=folder, recipe=recipe, setting=method, config=config, summary=summary, calibration_seed=(data_seed, seed)
    )


def test_repeats_of_one_calibration_are_labelled_by_draw(tmp_path):
    from lp_prune.analysis.analyze.pipeline import run_labels

    runs = [_labelled_run(tmp_path / n, r, s) for n, r, s in [("a", "en", 3), ("b", "en", 1), ("c", "sw", 0)]]
    assert run_labels(runs) == {"a": "en #3", "b": "en #1", "c": "sw"}
    shared = [_labelled_run(tmp_path / n, "en", 0, seed) for n, seed in [("a", 0), ("b", 1)]]
    assert run_labels(shared) == {"a": "en #0.0", "b": "en #0.1"}  # one data.seed: the seed tells them apart
    mixed = [_labelled_run(tmp_path / "a", "en", 0), _labelled_run(tmp_path / "b", "en", 0, method="magnitude")]
    assert run_labels(mixed) == {"a": "wanda en", "b": "magnitude en"}  # one draw per setting: no number


def test_figure_legends_have_one_entry_per_label(monkeypatch, tmp_path):
    from lp_prune.analysis.analyze import plots as analyze_plots
    from lp_prune.analysis.result import AnalysisResult

    entries: list[str] = []

    def keep_legend(fig, path):
        entries.extend(text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts())
        return path

    monkeypatch.setattr(analyze_plots, "save_figure", keep_legend)
    pooled = {"specific": [0.1, 0.2], "agnostic": [0.01, 0.02]}
    result = AnalysisResult(
        model="m",
        languages=["en"],
        runs=[],
        findings={},
        lsar={"rank": 1, "runs": {k: {"pooled": pooled} for k in "abc"}},
    )
    runs = [{"key": "a", "label": "en"}, {"key": "b", "label": "en"}, {"key": "c", "label": "sw"}]
    analyze_plots.lsar_errors(result, runs, "t", tmp_path / "x.png")
    assert entries == ["en", "sw"]


# --- LAPE bins: when the low-probability bin cannot be read as one ------------------------------------


def planted_bins(own_p: list[float], tokens: dict[str, int] | None):
    """2 layers x 500 neurons, background p in [0.01, 0.1]; neuron i of layer 0 fires for language
    i % 4 only, with p = own_p[i] (10 of them: the 1% LAPE selects). The lape section built from them."""
    from lp_prune.analysis.analyze.lape_shifts import lape_neuron_summary, probability_bins

    g = torch.Generator().manual_seed(0)
    probs = (0.01 + 0.09 * torch.rand(2, 500, 1, generator=g, dtype=torch.float64)).repeat(1, 1, len(LANGS))
    for i, p in enumerate(own_p):
        probs[0, i] = 0.002
        probs[0, i, i % len(LANGS)] = p
    neurons = language_specific_neurons(probs, LANGS)
    assert neurons.layer.tolist() == [0] * len(own_p) and neurons.neuron.tolist() == list(range(len(own_p)))
    edges = probability_bins(own_language_shift(probs, probs, neurons).dense)
    return lape_neuron_summary(neurons, 2, edges, tokens)


def test_lape_flags_a_low_bin_that_reaches_high_probabilities(caplog):
    plenty = dict.fromkeys(LANGS, 3000)
    spread = planted_bins(torch.linspace(0.15, 0.9, 10).tolist(), plenty)
    assert spread["low_bin_edges"][1] < 0.5 and not spread["low_bin_wide"]
    assert spread["warnings"] == [] and spread["tokens_below_minimum"] == {}
    assert not caplog.records
    high = planted_bins(torch.linspace(0.9, 0.99, 10).tolist(), plenty)  # every LAPE neuron fires on >= 90%
    assert high["low_bin_edges"] == high["dense_p_edges"][:2] and high["low_bin_edges"][1] > 0.9
    assert high["low_bin_wide"]
    (warning,) = high["warnings"]
    assert "lowest LAPE bin" in warning and warning in caplog.text


def test_lape_flags_languages_with_too_few_tokens(caplog):
    spread = torch.linspace(0.15, 0.9, 10).tolist()
    summary = planted_bins(spread, {"ar": 508, "de": 3000, "en": 2499, "sw": 2500})
    assert summary["tokens_below_minimum"] == {"ar": 508, "en": 2499}
    assert summary["min_tokens_per_language"] == 2500
    (warning,) = summary["warnings"]
    assert "ar 508, en 2499" in warning and warning in caplog.text
    assert planted_bins(spread, None)["tokens_below_minimum"] is None  # counts not given: not checked


def test_analyze_records_the_lape_bin_check_in_analysis_json(wanda_analysis):
    from lp_prune.analysis.result import AnalysisResult

    out = wanda_analysis
    record = json.loads((out / "analysis.json").read_text())
    lape = AnalysisResult.from_json(record, out / "analysis.json").lape  # the top level is unchanged
    assert lape["low_bin_edges"] == lape["dense_p_edges"][:2]
    assert lape["low_bin_wide"] == (lape["low_bin_edges"][1] > 0.5)
    assert isinstance(lape["warnings"], list) and lape["low_bin_wide"] == any("lowest" in w for w in lape["warnings"])
