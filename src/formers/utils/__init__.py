"""transformers' `utils` path for the few helpers scripts import from it: `logging`, `get_json_schema`,
`ModelOutput`, `PaddingStrategy`, the checkpoint file names and the `is_*_available` checks."""
from __future__ import annotations

import importlib.util
from functools import lru_cache

from typing import Any

import torch

from . import logging
from ..configuration_utils import CONFIG_NAME
from ..modeling_outputs import ModelOutput
from ..tokenization.json_schema import get_json_schema
from ..tokenization.padding import PaddingStrategy, TruncationStrategy

WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


def __getattr__(name: str) -> Any:
    # Read from generation on first use: importing the generation package here would make a cycle easy.
    if name == "GENERATION_CONFIG_NAME":
        from ..generation.configuration_utils import GENERATION_CONFIG_NAME

        return GENERATION_CONFIG_NAME
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@lru_cache(maxsize=None)
def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def is_torch_available() -> bool:
    return True  # formers runs on torch


def is_torch_sdpa_available() -> bool:
    import torch.nn.functional as F

    return hasattr(F, "scaled_dot_product_attention")


def is_flash_attn_2_available() -> bool:
    return _installed("flash_attn")


def is_accelerate_available() -> bool:
    return _installed("accelerate")


def is_sentencepiece_available() -> bool:
    return _installed("sentencepiece")


def is_tokenizers_available() -> bool:
    return True  # a formers dependency


def is_torchdynamo_compiling() -> bool:
    """True while torch.compile traces the calling code."""
    return torch.compiler.is_compiling()


__all__ = [
    "logging", "ModelOutput", "get_json_schema", "PaddingStrategy", "TruncationStrategy", "CONFIG_NAME",
    "GENERATION_CONFIG_NAME", "WEIGHTS_NAME", "WEIGHTS_INDEX_NAME", "SAFE_WEIGHTS_NAME", "SAFE_WEIGHTS_INDEX_NAME",
    "is_torchdynamo_compiling", "is_torch_available", "is_torch_sdpa_available",
    "is_flash_attn_2_available", "is_accelerate_available", "is_sentencepiece_available", "is_tokenizers_available",
]
