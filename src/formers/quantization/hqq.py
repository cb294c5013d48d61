"""`quantization_config=HqqConfig(...)` through the hqq package, when it is installed.

After the full-precision load every linear layer that 4.45 holds as an nn.Linear becomes hqq's `HQQLinear`
unless its tag (its dotted name without "model", "layers" and layer numbers: "self_attn.q_proj", "lm_head") is in
`skip_modules`; with `dynamic_config` each tag takes its own parameters and a tag without any stays in full
precision. The layer computes in the model's dtype. Those are the steps of transformers 4.45.2's HQQ
integration, which runs only where CUDA is; hqq's layers compute on the CPU too, so formers runs them there.
Like 4.45, such a model is not saved (4.45 calls it not serializable).
"""
from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .package_configs import HqqConfig, package_config
from .swap import reference_kind, swap_linears


def as_hqq_config(value: Any) -> HqqConfig | None:
    """The HqqConfig of a `quantization_config` argument when the hqq package is installed (else None:
    check_quantization_config then says that it is missing)."""
    value = package_config(value)
    return value if isinstance(value, HqqConfig) and importlib.util.find_spec("hqq") is not None else None


def linear_tag(name: str) -> str:
    """4.45's tag of a layer name: "model.layers.3.self_attn.q_proj" -> "self_attn.q_proj"."""
    return ".".join(part for part in name.split(".") if part not in ("model", "layers") and not part.isnumeric())


def _reference_names(model: nn.Module) -> dict[str, str | None]:
    """formers' name of each linear layer 4.45 holds as an nn.Linear -> 4.45's name of it (the checkpoint key of its
    weight); None where 4.45 holds it inside a fused layer (Falcon's, Bloom's, GPT-NeoX's query_key_value)."""
    key_map = model.key_map(model.config)
    names = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and reference_kind(model, name) == "linear":
            key = f"{name}.weight" if key_map is None else key_map.checkpoint_key(f"{name}.weight")
            names[name] = None if key is None else key.removesuffix(".weight")
    return names


def _parameters_per_layer(model: nn.Module, config: HqqConfig) -> dict[str, dict | None]:
    """formers' layer name -> hqq's parameters for it (None: kept in full precision), chosen by 4.45's tags."""
    names = _reference_names(model)
    tags = {linear_tag(reference) for reference in names.values() if reference is not None} - set(config.skip_modules)
    parameters = config.quant_config
    dynamic = any(key in tags for key in parameters)  # dynamic_config: per tag, None for the tags it leaves out
    chosen = {}
    for name, reference in names.items():
        if reference is None:
            raise ConfigError(f"quantization_config=HqqConfig: {type(model).__name__}'s {name} is one part of a fused "
                              "layer in 4.45's checkpoint layout, which HQQ quantizes as one tensor (its groups and "
                              "error span the parts); formers does not reproduce that: use TorchAoConfig or "
                              "BitsAndBytesConfig for this family")
        tag = linear_tag(reference)
        chosen[name] = None if tag not in tags else parameters.get(tag) if dynamic else parameters
    return chosen


def quantize_with_hqq(model: nn.Module, config: HqqConfig, dtype: torch.dtype) -> int:
    """Swap the model's linear layers for hqq's HQQLinear, in place; returns how many."""
    from hqq.core.quantize import HQQLinear

    per_layer = _parameters_per_layer(model, config)

    def build(name: str, linear: nn.Linear) -> nn.Module:
        layer = HQQLinear(linear, per_layer[name], compute_dtype=dtype, device=linear.weight.device, del_orig=True)
        if isinstance(layer.bias, torch.Tensor):
            layer.bias = nn.Parameter(layer.bias, requires_grad=False)
        return layer

    replaced = swap_linears(model, lambda name: per_layer.get(name) is None, build)
    model.config.quantization_config = config
    model.is_hqq_quantized, model.is_hqq_serializable = True, False
    return replaced
