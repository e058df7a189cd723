"""Tiny random-weight decoders of every supported architecture, built from a config (no download)."""

import torch
from transformers import (
    AutoModelForCausalLM,
    CohereConfig,
    Gemma3TextConfig,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
)

COMMON = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)

ARCHITECTURES = {
    "llama": lambda: LlamaConfig(**COMMON),
    "mistral": lambda: MistralConfig(**COMMON, sliding_window=8),
    "qwen2": lambda: Qwen2Config(**COMMON),
    "gemma3": lambda: Gemma3TextConfig(
        **COMMON,
        head_dim=8,
        sliding_window=6,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
    ),
    "cohere": lambda: CohereConfig(**COMMON, logit_scale=0.5),
}


def tiny_model(
    arch: str = "llama", seed: int = 0, attention: str = "eager", vocab_size: int | None = None
) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = ARCHITECTURES[arch]()
    if vocab_size is not None:
        config.vocab_size = vocab_size
    config._attn_implementation = attention
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    model.config.use_cache = False
    return model
