"""The config.json-style dict of a GGUF file: its metadata keys under the family's field names (architectures.py),
the values derived from its tensors, its rope scaling."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from .architectures import arch_spec, model_type_of
from .layouts import has_tensor
from .reader import GGUFFile


def gguf_config_dict(gguf: GGUFFile) -> dict[str, Any]:
    """config.json-style fields for the family config class (model_type included)."""
    arch, spec = arch_spec(gguf)
    config: dict[str, Any] = {"model_type": model_type_of(gguf), **spec.extra}
    for suffix in spec.required:
        if gguf.get(f"{arch}.{suffix}") is None:
            raise CheckpointError(f"{gguf.path}: metadata key '{arch}.{suffix}' is missing; a {arch} file states "
                                  f"it (the {spec.model_type} config cannot be built without it)")
    for suffix, name in spec.fields.items():
        value = gguf.get(f"{arch}.{suffix}")
        if value is not None:
            config[name] = value
    if "vocab_size" not in config:  # older files: the embedding's rows (4.45 counts the tokens, which may be fewer)
        embedding = next((t for t in gguf.tensors if t.name == "token_embd.weight"), None)
        tokens = gguf.get("tokenizer.ggml.tokens")
        if embedding is not None or tokens is not None:
            config["vocab_size"] = embedding.shape[0] if embedding is not None else len(tokens)
    for key, name in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                      ("padding_token_id", "pad_token_id")):
        if gguf.get(f"tokenizer.ggml.{key}") is not None:
            config[name] = gguf.get(f"tokenizer.ggml.{key}")
    config["tie_word_embeddings"] = not has_tensor(gguf, "output.weight")
    if spec.derive is not None:
        spec.derive(gguf, config)
    scaling = _rope_scaling(gguf, arch) or (_llama3_scaling(gguf, config) if arch == "llama" else None)
    if scaling is not None:
        config["rope_scaling"] = scaling
    config["_name_or_path"] = str(gguf.get("general.name", gguf.path.stem))
    return config


def _llama3_scaling(gguf: GGUFFile, config: dict[str, Any]) -> dict[str, Any] | None:
    """Llama 3.1+ files keep their rope scaling only as `rope_freqs.weight`: one divisor per frequency, 1 for
    short wavelengths, `factor` for long ones, 1 / ((1 - s) / factor + s) in between, with s linear in the
    frequency: s = (L / wavelength - low) / (high - low). The band gives the slope and offset of s; with
    low_freq_factor = 1 (every Llama 3.x release) they fix high_freq_factor and L. None: no usable band."""
    tensor = next((t for t in gguf.tensors if t.name == "rope_freqs.weight"), None)
    if tensor is None or tensor.type_name != "F32":
        return None
    divisors = torch.from_numpy(np.array(tensor.data, dtype=np.float64)).reshape(-1)
    factor = float(divisors.max())
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    theta = float(config.get("rope_theta", 10000.0))
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    band = (divisors > 1 + 1e-6) & (divisors < factor - 1e-6)
    if factor <= 1 or int(band.sum()) < 2:
        return None
    smooth = (1 / divisors[band] - 1 / factor) / (1 - 1 / factor)
    slope, offset = np.polyfit(freqs[band].numpy(), smooth.numpy(), 1)  # s = slope * freq + offset
    high = 1 - 1 / offset  # offset = -low / (high - low) with low = 1
    original = slope * 2 * math.pi * (high - 1)
    return {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": round(high, 4),
            "original_max_position_embeddings": int(round(original))}


def _rope_scaling(gguf: GGUFFile, arch: str) -> dict[str, Any] | None:
    kind = gguf.get(f"{arch}.rope.scaling.type")
    factor = gguf.get(f"{arch}.rope.scaling.factor")
    if kind in (None, "none") or factor is None:
        return None
    if kind not in ("linear", "yarn"):
        raise CheckpointError(f"{gguf.path}: rope scaling type {kind!r} is not supported (linear or yarn)")
    scaling = {"rope_type": kind, "factor": float(factor)}
    original = gguf.get(f"{arch}.rope.scaling.original_context_length")
    if kind == "yarn" and original is not None:
        scaling["original_max_position_embeddings"] = int(original)
    return scaling
