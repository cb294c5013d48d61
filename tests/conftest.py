"""Shared fixtures: tiny checkpoints built by the oracle (transformers 4.45.2) and the shared data folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
STORIES = SHARED / "models" / "stories260K"

TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2)


def requires_shared(path: Path = SHARED):
    return pytest.mark.skipif(not path.exists(), reason=f"shared test data {path} is absent")


def build_oracle_checkpoint(folder: Path, model_type: str, seed: int = 0, **overrides) -> Path:
    """Save a randomly initialised transformers model of `model_type` (tiny) into `folder`."""
    import transformers

    config_class, model_class = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    }[model_type]
    torch.manual_seed(seed)
    config = config_class(**{**TINY, **overrides})
    model = model_class(config)
    with torch.no_grad():  # make biases and norms non-trivial so their handling is actually tested
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_checkpoint(tmp_path_factory):
    def make(model_type: str = "llama", **overrides) -> Path:
        folder = tmp_path_factory.mktemp(model_type)
        return build_oracle_checkpoint(folder, model_type, **overrides)
    return make
