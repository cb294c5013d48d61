"""Shared fixtures: tiny checkpoints built by the oracle (transformers 4.45.2) and the shared data folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

try:  # quanto (the package of 4.45.2's quanto caches and QuantoConfig) compiles a C++ extension on first use:
    # ~65 s on 2 cores in CI. Its unpacking and quantizing have a Python implementation of the same integer
    # operations, which it falls back to itself where the extension fails; the tests take that one (same values,
    # both sides).
    from quanto.library import ops as _quanto_ops
    _quanto_ops._ext_enabled = False
except ImportError:
    pass

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

DATA = Path(__file__).resolve().parent / "data"  # vendored test data; licenses in data/NOTICE.md
STORIES = DATA / "stories260K"
GPT2_TOKENIZER = DATA / "tokenizers" / "gpt2"
# The Llama 2 tokenizer is not vendored (its license asks for its notice to travel with it): only its own
# tests read it from ../shared, and they skip with this reason when it is absent.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LLAMA2_TOKENIZER = SHARED / "tokenizers" / "llama2"
LLAMA2_ABSENT = (f"the Llama 2 tokenizer (Llama 2 Community License, not vendored) is read from {LLAMA2_TOKENIZER}, "
                 "which is absent")
TOKENIZER_DIRS = {"llama2": LLAMA2_TOKENIZER, "gpt2": GPT2_TOKENIZER, "stories260K": STORIES}

TINY = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2)


def requires_shared(path: Path = LLAMA2_TOKENIZER):
    """Skip marker for tests that need a file outside the repository (today only the Llama 2 tokenizer)."""
    reason = LLAMA2_ABSENT if path == LLAMA2_TOKENIZER else f"test data {path} is absent"
    return pytest.mark.skipif(not path.exists(), reason=reason)


def build_oracle_checkpoint(folder: Path, model_type: str, seed: int = 0, base: dict | None = None,
                            **overrides) -> Path:
    """Save a randomly initialised transformers model of `model_type` into `folder`: the `base` fields
    (TINY unless given: families with other field names pass their own) updated by `overrides`."""
    import transformers

    torch.manual_seed(seed)
    config = transformers.AutoConfig.for_model(model_type, **{**(TINY if base is None else base), **overrides})
    model = transformers.AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # make biases and norms non-trivial so their handling is actually tested
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln" in name.split(".")[-2]:
                param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_checkpoint(tmp_path_factory):
    def make(model_type: str = "llama", **overrides) -> Path:
        folder = tmp_path_factory.mktemp(model_type)
        return build_oracle_checkpoint(folder, model_type, **overrides)
    return make
