"""`quantization_config=QuantoConfig(weights=...)` through the quanto package, when it is installed.

After the full-precision load every linear layer whose dotted name holds none of `modules_to_not_convert`
(by default the output head, as 4.45 keeps it) and that 4.45 holds as an nn.Linear (not GPT-2's Conv1D layers,
nor experts stored as stacked tensors: the model class's `reference_layer_kinds`) becomes quanto's `QLinear`
with the requested weight type, its weights copied in and frozen (quantized) at once: the modules and steps of
transformers 4.45.2's quanto integration, so logits and tokens equal 4.45.2's on the same checkpoint. Like 4.45,
quantizing activations at load is refused (quanto's own `quantize`/`calibrate` do that on a loaded model), and
such a model is not saved: 4.45 calls it not serializable.
"""
from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .package_configs import QuantoConfig, package_config
from .swap import output_head_names, swap_linears


def as_quanto_config(value: Any) -> QuantoConfig | None:
    """The QuantoConfig of a `quantization_config` argument (object or 4.45-style dict) when the quanto package
    is installed (else None: check_quantization_config then says that it is missing)."""
    value = package_config(value)
    if not isinstance(value, QuantoConfig) or importlib.util.find_spec("quanto") is None:
        return None
    if value.activations is not None:
        raise ConfigError(f"QuantoConfig(activations={value.activations!r}): quantizing activations while loading is "
                          "not supported (as in transformers 4.45); load with activations=None, then use quanto's "
                          "quantize() and calibrate() on the model")
    return value


def _qlinear(quanto, name: str, linear: nn.Linear, weights: str) -> nn.Module:
    module = quanto.QLinear(linear.in_features, linear.out_features, bias=linear.bias is not None,
                            dtype=linear.weight.dtype, device=linear.weight.device,
                            weights=getattr(quanto, f"q{weights}"), activations=None)
    with torch.no_grad():
        module.weight.copy_(linear.weight)
        if linear.bias is not None:
            module.bias.copy_(linear.bias)
    try:
        module.freeze()
    except ValueError as error:  # e.g. a [1, hidden] gate: one output row has no axis to quantize along
        raise ConfigError(f"QuantoConfig(weights={weights!r}): quanto cannot quantize {name} (weight "
                          f"{list(linear.weight.shape)}): {error}; list it in modules_to_not_convert") from None
    return module.requires_grad_(False)


def quantize_with_quanto(model: nn.Module, config: QuantoConfig) -> int:
    """Swap the model's linear layers for quanto's frozen QLinear, in place; returns how many."""
    import quanto

    skip = list(config.modules_to_not_convert) if config.modules_to_not_convert is not None \
        else output_head_names(model)
    replaced = swap_linears(model, lambda name: any(key in name for key in skip),  # 4.45: a substring of the path
                            lambda name, linear: _qlinear(quanto, name, linear, config.weights))
    model.config.quantization_config = config
    return replaced
