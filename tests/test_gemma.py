"""The packaged Gemma-3-270M end to end (marked `gemma`: converts the GGUF once, then ~1 min a test)."""

import json
import math

import pytest

from lp_prune.cli import main
from lp_prune.config import LANGUAGES

pytestmark = pytest.mark.gemma

QUICK = [
    "--data.nsamples", "8", "--data.seqlen", "128", "--data.batch_size", "4",
    "--data.eval_windows", "2", "--data.eval_seqlen", "128",
]  # fmt: skip


# One method: the packaged model's path (conversion, loading, layer walk, perplexity) is the same for
# every method, and each method's maths is tested on tiny models; this run costs ~40 s of CI.
@pytest.mark.parametrize("method", ["sparsegpt"])
def test_packaged_gemma_half_sparse_with_finite_perplexity(tmp_path, method):
    out = tmp_path / method
    assert main(["run", "--config", "configs/default.yaml", "--out", str(out), "--prune.method", method, *QUICK]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sparsity"] == pytest.approx(0.5, abs=0.005)
    assert 0.02 < summary["dense_zeros"] < 0.1  # the 4-bit GGUF origin leaves ~4.5% zeros
    assert len(summary["modules"]) == 18 * 7
    for stage in ("dense", "pruned"):
        assert set(summary["perplexity"][stage]) == set(LANGUAGES)
        assert all(math.isfinite(v) and v > 1 for v in summary["perplexity"][stage].values())
    # Pruning half the weights must cost something on the calibration language.
    assert summary["perplexity"]["pruned"]["en"] > summary["perplexity"]["dense"]["en"]
