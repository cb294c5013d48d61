"""`quantization_config=BitsAndBytesConfig(load_in_8bit=True | load_in_4bit=True)` through the bitsandbytes
package, when it is installed (its CPU backend runs here; CUDA where torch has it).

The model loads in full precision as usual, then every linear layer except the output head (or
`llm_int8_skip_modules`) becomes the package's `Linear8bitLt` / `Linear4bit`, whose weights bitsandbytes
quantizes when they are placed on the model's device. These are the modules and settings transformers 4.45
uses; 4.45.2 itself stops with an AttributeError on a CPU-only machine with bitsandbytes 0.50 (its backend
check treats the package's frozenset of devices as a set), so formers is checked against the package's modules
applied by hand. Unlike 4.45 the default torch_dtype stays float32: 4.45 switches it to float16, which CPU
kernels compute slowly. Saving such a model is refused: formers does not write bitsandbytes' state layout.
"""
from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .config import BitsAndBytesConfig, package_config
from .swap import output_head_names, swap_linears


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def as_bitsandbytes_config(value: Any) -> BitsAndBytesConfig | None:
    """The BitsAndBytesConfig of a `quantization_config` argument (object or 4.45-style dict), else None."""
    config = package_config(value)
    return config if isinstance(config, BitsAndBytesConfig) else None


def _skipped(name: str, skip: list[str]) -> bool:
    """A module stays in full precision when a listed name is one or more whole parts of its dotted path."""
    return any(f".{key}." in f".{name}." for key in skip)


def _quantized_linear(bnb, linear: nn.Linear, config: BitsAndBytesConfig, device: torch.device) -> nn.Module:
    weight, bias = linear.weight.data, linear.bias
    if config.load_in_8bit:
        module = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias is not None,
                                     has_fp16_weights=config.llm_int8_has_fp16_weight,
                                     threshold=config.llm_int8_threshold)
        module.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=config.llm_int8_has_fp16_weight)
    else:
        storage = config.bnb_4bit_quant_storage or torch.uint8
        module = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias is not None,
                                   compute_dtype=config.bnb_4bit_compute_dtype or torch.float32,
                                   compress_statistics=config.bnb_4bit_use_double_quant,
                                   quant_type=config.bnb_4bit_quant_type, quant_storage=storage)
        module.weight = bnb.nn.Params4bit(weight, requires_grad=False,
                                          compress_statistics=config.bnb_4bit_use_double_quant,
                                          quant_type=config.bnb_4bit_quant_type, quant_storage=storage)
    if bias is not None:
        module.bias = nn.Parameter(bias.data, requires_grad=False)
    return module.to(device)  # bitsandbytes quantizes the weight as it moves it


def quantize_with_bitsandbytes(model: nn.Module, config: BitsAndBytesConfig) -> int:
    """Swap the model's linear layers for bitsandbytes' quantized ones, in place; returns how many."""
    if not bitsandbytes_installed():
        raise ConfigError("quantization_config=BitsAndBytesConfig: it needs the bitsandbytes package, which is not "
                          "installed (pip install bitsandbytes); formers' own weight-only schemes are "
                          "TorchAoConfig('int8_weight_only') and TorchAoConfig('int4_weight_only')")
    import bitsandbytes as bnb

    skip = list(config.llm_int8_skip_modules) if config.llm_int8_skip_modules else output_head_names(model)
    replaced = swap_linears(model, lambda name: _skipped(name, skip),
                            lambda name, linear: _quantized_linear(bnb, linear, config, linear.weight.device),
                            reference_kinds=("linear", "conv1d"))  # 4.45 swaps GPT-2's Conv1D layers too
    model.config.quantization_config = config.to_dict()
    return replaced
