"""transformers' `utils` path for the few helpers scripts import from it: `logging`, `get_json_schema`,
`ModelOutput` and the `is_*_available` checks."""
from __future__ import annotations

import importlib.util
from functools import lru_cache

from . import logging
from ..modeling_outputs import ModelOutput
from ..tokenization.json_schema import get_json_schema


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


__all__ = [
    "logging", "ModelOutput", "get_json_schema", "is_torch_available", "is_torch_sdpa_available",
    "is_flash_attn_2_available", "is_accelerate_available", "is_sentencepiece_available", "is_tokenizers_available",
]
