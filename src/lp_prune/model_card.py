"""README.md model cards for the saved model folders (model/ and model-compressed/), as the Hugging Face
hub shows them: the Hub's metadata header (library_name, tags, base_model, license, language, and a
model-index with the pruned model's perplexities), then what was pruned, how it was calibrated, the
run's perplexities from its summary, and how to load the folder. The header is written with
huggingface_hub's ModelCardData and EvalResult (offline).

The license is the base model's where it is known: the packaged Gemma's (gemma), or the one in the
header of the base model's own card, in its local folder or in the Hub cache (nothing is downloaded).

Written once the run's summary is known, so the numbers in the card are summary.json's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from lp_prune.config.schema import PACKAGED_MODEL
from lp_prune.data.reference import REFERENCE_RECIPES
from lp_prune.languages import LANGUAGES, mc4_config
from lp_prune.storage.files import atomic_write_text

if TYPE_CHECKING:
    from lp_prune.config import RunConfig
    from lp_prune.tracking.summary import RunSummary

CARD_FILE = "README.md"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# The packaged default: Google's Gemma-3-270M as a Q4_K_M GGUF, whose metadata says general.license gemma.
PACKAGED_BASE_MODEL = "google/gemma-3-270m"
PACKAGED_LICENSE = "gemma"
LICENSE_KEYS = ("license", "license_name", "license_link")  # license "other" names and links its terms
MAX_BASE_CARD_BYTES = 1 << 20  # a base model's README.md read for its license: larger ones are not read


def format_number(value: float | None) -> str:
    """A perplexity as the card shows it: 4 decimals, n/a when unknown or not finite."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4f}"


def base_model(name: str) -> str | None:
    """The hub id the run started from (the packaged Gemma's original for the packaged model); None for a
    local folder."""
    if name == PACKAGED_MODEL:
        return PACKAGED_BASE_MODEL
    if Path(name).exists() or not _HUB_ID.fullmatch(name):
        return None
    return name


def base_license(name: str, revision: str | None = None) -> dict[str, str]:
    """The base model's license fields (license, and license_name / license_link with license other)
    where they are known: the packaged Gemma's, or those in the header of the model's card (README.md)
    in its local folder or in the Hub cache; {} otherwise. Nothing is downloaded."""
    if name == PACKAGED_MODEL:
        return {"license": PACKAGED_LICENSE}
    card = _base_card_path(name, revision)
    if card is None or card.stat().st_size > MAX_BASE_CARD_BYTES:
        return {}
    try:
        data = ModelCard.load(card, ignore_metadata_errors=True).data
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    fields = {key: getattr(data, key, None) for key in LICENSE_KEYS}
    return {key: value for key, value in fields.items() if isinstance(value, str) and value}


def _base_card_path(name: str, revision: str | None) -> Path | None:
    folder = Path(name).expanduser()
    if folder.is_dir():
        card = folder / CARD_FILE
        return card if card.is_file() else None
    if not _HUB_ID.fullmatch(name):
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, CARD_FILE, revision=revision)
    return Path(cached) if isinstance(cached, str | Path) and Path(cached).is_file() else None  # else not cached


def pattern_text(summary: RunSummary) -> str:
    """What the method removed: whole FFN channels and heads for a structured method, else the pattern."""
    if summary.capabilities().structured:
        return "structured (whole FFN channels and attention heads; the saved model is smaller)"
    return summary.pattern


def model_card(
    summary: RunSummary,
    config: RunConfig,
    compressed: Mapping[str, Any] | None = None,
    dense_dir: str = "model",
    dense: Mapping[str, Any] | None = None,
) -> str:
    """The card of model/ (`compressed` None; `dense`: the sparsity_config its config.json records) or of
    model-compressed/ (`compressed`: its sparsity_config, or its quantization_config when it is
    pack-quantized)."""
    capabilities = summary.capabilities()
    method = capabilities.display_name  # as people name it: its paper's name for a built-in method
    mix = summary.calibration_mix or {summary.calibration_language: summary.nsamples}
    evaluated = list(dict.fromkeys(lang for values in summary.perplexity.values() for lang in values))
    languages = [lang for lang in dict.fromkeys([*mix, *evaluated]) if lang in LANGUAGES]
    sparse = capabilities.zeroes
    title = Path(summary.model.rstrip("/")).name or summary.model
    pattern = "structured" if capabilities.structured else summary.pattern
    tags = ["lp-prune", "pruned", "sparse", summary.method, pattern.replace(":", "of") + "-sparsity"]
    if not sparse:
        tags = ["lp-prune", "quantized", summary.method]
    if compressed is not None:
        tags.append("compressed-tensors")
    heading = f"{title}, {'pruned' if sparse else 'quantized'} with {method}"
    results = eval_results(summary, config)
    front = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=tags,
        base_model=base_model(summary.model),
        language=languages or None,
        model_name=heading if results else None,
        eval_results=results or None,
        **base_license(summary.model, config.model.revision),
    )
    sparsity = "n/a" if summary.sparsity is None else f"{summary.sparsity:.4f}"
    lines = [
        "---",
        front.to_yaml(),
        "---",
        "",
        f"# {heading}",
        "",
        _what_folder(compressed, dense is not None),
        "",
        "## Pruning",
        "",
        f"- Method: {method} (lp_prune `prune.method: {summary.method}`)",
        f"- Pattern: {pattern_text(summary)}",
        f"- Target sparsity: {summary.target_sparsity:.4f}",
        f"- Measured sparsity: {sparsity} (fraction of exact zeros in the pruned Linear weights; "
        "embeddings and lm_head are not pruned)",
        f"- Pruned Linear modules: {len(summary.modules)}",
        f"- Base model: {summary.model}",
    ]
    targets = config.prune.linear_targets
    if targets != type(targets)():
        lines.append(f"- Linears chosen by prune.targets and prune.ignore: {targets.describe()}")
    if is_pack_quantized(compressed):
        lines += _stored_quantized(compressed, summary.sparsity if sparse else None)
    elif compressed is not None or dense is not None:
        stored = compressed if compressed is not None else dense
        lines.append(
            f"- Stored as: compressed-tensors `{stored.get('format')}`, sparsity_structure "
            f"`{stored.get('sparsity_structure')}`, global_sparsity {stored.get('global_sparsity', 0.0):.4f}"
        )
    lines += [
        "",
        "## Calibration",
        "",
        "- Language(s): " + ", ".join(f"{lang} ({count} windows)" for lang, count in mix.items()),
        f"- Windows: {summary.nsamples} of {summary.seqlen} tokens ({summary.calibration_tokens} tokens)",
        f"- Statistics across languages: {summary.statistics}",
        f"- Data source: {config.data.source}",
        f"- Seed: {summary.seed} (run), {config.data.seed} (data sampling)",
        "",
        "## Perplexity",
        "",
        *_perplexity_table(summary, config),
        "",
        "## How to load",
        "",
        *_loading(compressed, dense_dir, dense is not None),
        "",
        "## Produced by",
        "",
        f"lp_prune {summary.versions.get('lp_prune', 'unknown')}"
        + "".join(f", {lib} {summary.versions[lib]}" for lib in ("transformers", "torch") if lib in summary.versions)
        + (f", compressed-tensors {compressed_version()}" if compressed is not None else "")
        + ". The run directory's summary.json and config.yaml hold the full record.",
        "",
    ]
    return str(ModelCard("\n".join(lines)))


def eval_results(summary: RunSummary, config: RunConfig) -> list[EvalResult]:
    """The model-index entries: the pruned model's perplexity on each evaluated language's held-out text
    and on each reference set (the dense model's are its base model's, not this card's)."""
    results = []
    for name, value in summary.perplexity.get("pruned", {}).items():
        if value is None or not math.isfinite(value):
            continue
        dataset = _evaluation_dataset(name, config)
        results.append(
            EvalResult(
                task_type="text-generation",
                task_name="Language modeling",
                metric_type="perplexity",
                metric_name=f"Perplexity ({name})",
                metric_value=round(value, 4),
                **dataset,
            )
        )
    return results


def _evaluation_dataset(name: str, config: RunConfig) -> dict[str, str]:
    """EvalResult's dataset fields for the held-out text of language (or reference set) `name`."""
    if name in REFERENCE_RECIPES:
        recipe = REFERENCE_RECIPES[name]
        config_name = {"dataset_config": recipe.config} if recipe.config else {}
        return {"dataset_type": recipe.dataset, "dataset_name": name, "dataset_split": recipe.split, **config_name}
    source = config.data.source
    if source == "mc4":
        return {
            "dataset_type": "allenai/c4",
            "dataset_name": f"mC4 {name}",
            "dataset_config": mc4_config(name),
            "dataset_split": "validation",
        }
    if source == "files":
        return {"dataset_type": "local", "dataset_name": f"held-out part of data.files.{name}", "dataset_config": name}
    return {  # packaged text (also what token-file and generated calibration evaluate on)
        "dataset_type": "dataset-build",
        "dataset_name": f"held-out packaged {name} text",
        "dataset_config": name,
        "dataset_split": "held-out",
    }


def is_pack_quantized(compressed: Mapping[str, Any] | None) -> bool:
    return compressed is not None and compressed.get("format") == "pack-quantized"


def _stored_quantized(compressed: Mapping[str, Any], sparsity: float | None) -> list[str]:
    weights = next(iter(compressed.get("config_groups", {}).values()), {}).get("weights", {})
    grid = f"{weights.get('num_bits')}-bit {'symmetric' if weights.get('symmetric') else 'asymmetric'} integers"
    per = "per output row" if weights.get("group_size") is None else f"per group of {weights['group_size']} inputs"
    lines = [f"- Stored as: compressed-tensors `pack-quantized`, {grid}, one scale {per}"]
    if sparsity:
        lines.append(
            f"- Also sparse: {sparsity:.4f} of the quantized weights are zero; pack-quantized has no sparse "
            "storage, so the zeros are stored as codes (the zero point) and take as much room as any weight"
        )
    return lines


def _what_folder(compressed: Mapping[str, Any] | None, recorded: bool = False) -> str:
    if is_pack_quantized(compressed):
        return (
            "This folder holds the quantized model as a compressed checkpoint in compressed-tensors' "
            "`pack-quantized` format (the layout llm-compressor writes for GPTQ models): every quantized Linear "
            "stores its integer codes packed into int32 (`weight_packed`), its `weight_scale`, its "
            "`weight_zero_point` (asymmetric grids) and `weight_shape`; config.json carries the quantization "
            "config under `quantization_config`. The run directory's model/ holds the same weights dequantized."
        )
    if compressed is None:
        record = (
            " sparsity_config.json records the sparsity in compressed-tensors' sparsity config for a sparse model "
            "saved dense: format `dense`, the global sparsity and the structure."
            if recorded
            else ""
        )
        return (
            "This folder holds the pruned model as a dense checkpoint: every weight stored in full, the pruned "
            "ones as exact zeros (transformers' layout: config.json and safetensors weights)." + record
        )
    return (
        "This folder holds the pruned model as a compressed sparse checkpoint in compressed-tensors' legacy "
        f"`{compressed.get('format')}` format: every pruned Linear stores its kept values and a bitmask, in "
        "sparse-bitmask*.safetensors; config.json carries the sparsity config under "
        "`quantization_config.sparsity_config`. The run directory's model/ holds the same weights dense."
    )


def _perplexity_table(summary: RunSummary, config: RunConfig) -> list[str]:
    stages = list(summary.perplexity)
    if not stages:
        return ["Not measured in this run (eval.perplexity false)."]
    languages = list(dict.fromkeys(lang for values in summary.perplexity.values() for lang in values))
    rows = [
        f"Held-out text per language, {config.data.eval_windows} windows of {config.data.eval_seqlen} tokens; "
        "exp(mean token NLL), lower is better.",
        "",
        "| language | " + " | ".join(stages) + " |",
        "|---|" + "---|" * len(stages),
    ]
    for lang in languages:
        cells = [format_number(summary.perplexity[stage].get(lang)) for stage in stages]
        rows.append(f"| {lang} | " + " | ".join(cells) + " |")
    return rows


def _loading(compressed: Mapping[str, Any] | None, dense_dir: str, recorded: bool = False) -> list[str]:
    if is_pack_quantized(compressed):
        return _loading_quantized(dense_dir)
    if compressed is None:
        record = [
            "",
            "The sparsity is recorded in sparsity_config.json (compressed-tensors' dense sparsity config), "
            "beside config.json: transformers loads the folder as a plain dense checkpoint.",
        ]
        return [
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            'model = AutoModelForCausalLM.from_pretrained("path/to/model")',
            'tokenizer = AutoTokenizer.from_pretrained("path/to/model")',
            "```",
            *(record if recorded else []),
            "",
            "vLLM serves it as any dense model (`vllm serve path/to/model`); the zeros take no less memory or "
            "time there. llm-compressor can take it as its input model (for quantization on top of the sparsity).",
        ]
    return [
        "```python",
        "from lp_prune.tracking.sparse_checkpoint import load_compressed_model, load_decompressed",
        'model = load_compressed_model("path/to/model-compressed")  # a transformers model, dense again',
        'weights = load_decompressed("path/to/model-compressed")  # or only the dense state dict',
        "```",
        "",
        "No current reader decompresses the sparse bitmask formats (compressed-tensors 0.15 and later removed "
        "their compressors), and transformers 5 would load such a folder with the pruned Linears initialised "
        "at random. The weight files are therefore named so that `from_pretrained` does not find them: it "
        f"refuses this folder with an error. Load the dense {dense_dir}/ folder with transformers instead, or "
        "this folder as above.",
        "",
        "vLLM: recent releases refuse sparse compressed checkpoints (Sparse24 support was removed, "
        '"Sparse24 models are no longer supported by vLLM"); serve the dense folder instead.',
    ]


def _loading_quantized(dense_dir: str) -> list[str]:
    return [
        "```python",
        "from transformers import AutoModelForCausalLM, CompressedTensorsConfig",
        "model = AutoModelForCausalLM.from_pretrained(",
        '    "path/to/model-compressed", quantization_config=CompressedTensorsConfig(dequantize=True)',
        ")  # decompressed on load: the weights of " + dense_dir + "/",
        "```",
        "",
        "transformers 5 with compressed-tensors 0.20 needs `dequantize=True` for asymmetric grids: a plain "
        "`from_pretrained` refuses their packed `weight_zero_point` with a size mismatch (symmetric grids "
        "store none and load plainly, decompressed at the first forward). vLLM's compressed-tensors support "
        "(its WNA16 scheme) takes 4- and 8-bit weights in this format; not tried with these folders, whose "
        "scales are float32 where llm-compressor writes the model's dtype.",
    ]


def compressed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("compressed-tensors")
    except PackageNotFoundError:
        return "unknown"


def write_model_card(
    folder: Path,
    summary: RunSummary,
    config: RunConfig,
    compressed: Mapping[str, Any] | None = None,
    dense: Mapping[str, Any] | None = None,
) -> Path:
    """README.md in `folder`, written atomically."""
    path = folder / CARD_FILE
    atomic_write_text(path, model_card(summary, config, compressed, dense=dense))
    return path
