"""The model card's Hub metadata: license and base_model from the base model where known, and a
model-index with the pruned model's perplexities, written with huggingface_hub's ModelCardData."""

import pytest
import yaml
from huggingface_hub import ModelCard

from lp_prune.config import RunConfig
from lp_prune.model_card import model_card
from lp_prune.tracking.summary import RunSummary

PERPLEXITY = {"dense": {"en": 10.0, "sw": 20.0}, "pruned": {"en": 12.345678, "sw": float("nan"), "wikitext2": 30.5}}


def summary_of(model: str) -> RunSummary:
    return RunSummary(
        model=model, method="wanda", pattern="unstructured", target_sparsity=0.5, calibration_language="en",
        nsamples=4, seqlen=32, modules=[], sparsity=0.5, perplexity=PERPLEXITY,
    )  # fmt: skip


def header(card: str) -> dict:
    """The YAML header, read plainly and checked by huggingface_hub's own parser."""
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    parsed = ModelCard(card).data  # raises on a model-index the Hub would refuse
    assert parsed.license == front.get("license") and parsed.base_model == front.get("base_model")
    return front


def test_the_packaged_gemma_card_names_its_license_base_model_and_results():
    front = header(model_card(summary_of("gemma3-270m"), RunConfig()))
    assert front["license"] == "gemma" and front["base_model"] == "google/gemma-3-270m"
    assert front["library_name"] == "transformers" and front["language"] == ["en", "sw"]
    [index] = front["model-index"]
    results = {r["metrics"][0]["name"]: r for r in index["results"]}
    assert set(results) == {"Perplexity (en)", "Perplexity (wikitext2)"}  # pruned only; NaN left out
    english = results["Perplexity (en)"]
    assert english["metrics"][0] == {"type": "perplexity", "value": 12.3457, "name": "Perplexity (en)"}
    assert english["task"]["type"] == "text-generation"
    assert english["dataset"] == {
        "name": "held-out packaged en text",
        "type": "dataset-build",
        "config": "en",
        "split": "held-out",
    }
    wikitext = results["Perplexity (wikitext2)"]["dataset"]
    assert (wikitext["type"], wikitext["config"], wikitext["split"]) == (
        "Salesforce/wikitext",
        "wikitext-2-raw-v1",
        "test",
    )


def test_a_local_base_models_card_gives_its_license(tmp_path):
    (tmp_path / "README.md").write_text(
        "---\nlicense: other\nlicense_name: my-terms\nlicense_link: LICENSE\n---\n# x\n"
    )
    front = header(model_card(summary_of(str(tmp_path)), RunConfig()))
    assert (front["license"], front["license_name"], front["license_link"]) == ("other", "my-terms", "LICENSE")
    assert "base_model" not in front
    (tmp_path / "README.md").write_text("no header at all")
    assert "license" not in header(model_card(summary_of(str(tmp_path)), RunConfig()))


def test_a_hub_models_cached_card_gives_its_license(tmp_path, monkeypatch):
    import huggingface_hub

    cached = tmp_path / "README.md"
    cached.write_text("---\nlicense: apache-2.0\n---\n")
    asked = []
    monkeypatch.setattr(
        huggingface_hub, "try_to_load_from_cache", lambda repo, name, revision=None: asked.append(revision) or cached
    )
    config = RunConfig()
    config.model.revision = "v1"
    front = header(model_card(summary_of("org/model"), config))
    assert front["license"] == "apache-2.0" and front["base_model"] == "org/model" and asked == ["v1"]
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name, revision=None: None)
    assert "license" not in header(model_card(summary_of("org/model"), config))  # not in the cache: not fetched


@pytest.mark.parametrize(("source", "kind", "config"), [("mc4", "allenai/c4", "sw"), ("files", "local", "sw")])
def test_results_name_where_the_held_out_text_came_from(source, kind, config):
    run = RunConfig()
    run.data.source = source
    summary = summary_of("gemma3-270m")
    summary.perplexity = {"pruned": {"sw": 40.0}}
    [result] = header(model_card(summary, run))["model-index"][0]["results"]
    assert (result["dataset"]["type"], result["dataset"]["config"]) == (kind, config)


def test_a_card_without_measured_perplexity_has_no_model_index():
    summary = summary_of("gemma3-270m")
    summary.perplexity = {}
    front = header(model_card(summary, RunConfig()))
    assert "model-index" not in front and front["license"] == "gemma"
