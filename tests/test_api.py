"""The Python API: lp_prune.prune on a model in memory, lp_prune.run for the whole job."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import lp_prune
from lp_prune.config import RunConfig
from test_pipeline import SMALL, run_cli


@pytest.mark.parametrize("method", ["sparsegpt", "wanda"])
def test_prune_in_memory_gives_the_clis_masks(tiny_model_dir, tmp_path, method):
    """Same model, same calibration windows (the CLI's saved token file): same masks and weights."""
    assert run_cli(tiny_model_dir, tmp_path / "cli", "--prune.method", method, "--save_model", "true") == 0
    ids = torch.load(tmp_path / "cli" / "calibration_tokens.pt")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    result = lp_prune.prune(model, ids, method=method, sparsity=0.5, batch_size=2)
    saved = lp_prune.load_masks(tmp_path / "cli")
    assert result.masks.keys() == saved.keys()
    assert all(torch.equal(result.masks[name], saved[name]) for name in saved)
    pruned = AutoModelForCausalLM.from_pretrained(tmp_path / "cli" / "model")
    for (name, mine), theirs in zip(model.state_dict().items(), pruned.state_dict().values(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0, msg=name)  # pruned in place, as the CLI's
    assert result.sparsity == pytest.approx(0.5, abs=0.01)
    assert [r.module for r in result.records] == list(saved)


def test_prune_cuts_packaged_text_with_the_tokenizer(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    result = lp_prune.prune(model, tokenizer, method="wanda", calibration="en+sw", nsamples=4, seqlen=32)
    assert len(result.masks) == 3 * 7 and result.sparsity == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="integers"):
        lp_prune.prune(model, torch.zeros(2, 8), method="wanda")


def test_run_is_the_whole_job(tiny_model_dir, tmp_path):
    config = RunConfig(out=str(tmp_path / "run"))
    config.model.name = str(tiny_model_dir)
    flags = dict(zip(SMALL[::2], SMALL[1::2], strict=True))
    config.data.nsamples, config.data.seqlen = int(flags["--data.nsamples"]), int(flags["--data.seqlen"])
    config.data.eval_windows, config.data.eval_seqlen = 1, 32
    config.data.eval_languages = ["en"]
    config.wandb.mode = "disabled"
    run_dir = lp_prune.run(config)
    assert (run_dir / "status").read_text().strip() == "COMPLETE"
    assert len(lp_prune.load_masks(run_dir)) == 3 * 7
