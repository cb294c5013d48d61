"""`quantization_config=BitsAndBytesConfig(load_in_8bit=True | load_in_4bit=True)` through the bitsandbytes
package, when it is installed (its CPU backend runs here; CUDA where torch has it).

The model loads in full precision as usual, then every linear layer except the output head (or
`llm_int8_skip_modules`) becomes the package's `Linear8bitLt` / `Linear4bit`, whose weights bitsandbytes
quantizes when they are placed on the model's device. These are the modules and settings transformers 4.45
uses; 4.45.2 itself stops with an AttributeError on a CPU-only machine with bitsandbytes 0.50 (its backend
check treats the package's frozenset of devices as a set), so formers is checked against the package's modules
applied by hand. Unlike 4.45 the default torch_dtype stays float32: 4.45 switches it to float16, which CPU
kernels compute slowly.

Saving writes each layer's state as bitsandbytes gives it (4.45's layout: the int8 weight with its row scales
`SCB`, or the packed 4-bit weight with `weight.absmax`, `weight.quant_map`, with double quantization
`weight.nested_absmax` / `weight.nested_quant_map`, and `weight.quant_state.bitsandbytes__<type>`), and a folder
in that layout, from formers or from transformers 4.45, loads back into the same layers (`PrequantizedLayers`).
On a CPU with AVX512_BF16, bitsandbytes' first 4-bit forward repacks each layer for its kernel (the weight's
nibbles regrouped, `absmax` transposed and rounded to bfloat16, double quantization expanded), and its own
`_save_to_state_dict` then unpacks the layer in place but leaves a plain `absmax` transposed (bitsandbytes 0.50):
the file loads with each block's scale on another block, and the live layer computes wrong from then on.
formers saves such a layer from an unpacked copy with the blocks' scales in order (`canonical_4bit_layers`) and
leaves the live layer packed: the reload computes what the model computed.
"""
from __future__ import annotations

import copy
import importlib.util
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError
from .package_configs import BitsAndBytesConfig, package_config
from .swap import output_head_names, reference_kind, swap_linears


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def as_bitsandbytes_config(value: Any) -> BitsAndBytesConfig | None:
    """The BitsAndBytesConfig of a `quantization_config` argument (object or 4.45-style dict), else None."""
    config = package_config(value)
    return config if isinstance(config, BitsAndBytesConfig) else None


def _skipped(name: str, skip: list[str]) -> bool:
    """A module stays in full precision when a listed name is one or more whole parts of its dotted path."""
    return any(f".{key}." in f".{name}." for key in skip)


def _layer(bnb, linear: nn.Linear, config: BitsAndBytesConfig) -> nn.Module:
    """bitsandbytes' layer for `linear` with these settings, its weight still to be set."""
    if config.load_in_8bit:
        return bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, linear.bias is not None,
                                   has_fp16_weights=config.llm_int8_has_fp16_weight,
                                   threshold=config.llm_int8_threshold)
    return bnb.nn.Linear4bit(linear.in_features, linear.out_features, linear.bias is not None,
                             compute_dtype=config.bnb_4bit_compute_dtype or torch.float32,
                             compress_statistics=config.bnb_4bit_use_double_quant,
                             quant_type=config.bnb_4bit_quant_type, quant_storage=_storage(config))


def _storage(config: BitsAndBytesConfig) -> torch.dtype:
    return config.bnb_4bit_quant_storage or torch.uint8


def _quantized_linear(bnb, linear: nn.Linear, config: BitsAndBytesConfig, device: torch.device) -> nn.Module:
    weight, bias = linear.weight.data, linear.bias
    module = _layer(bnb, linear, config)
    if config.load_in_8bit:
        module.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=config.llm_int8_has_fp16_weight)
    else:
        module.weight = bnb.nn.Params4bit(weight, requires_grad=False,
                                          compress_statistics=config.bnb_4bit_use_double_quant,
                                          quant_type=config.bnb_4bit_quant_type, quant_storage=_storage(config))
    if bias is not None:
        module.bias = nn.Parameter(bias.data, requires_grad=False)
    return module.to(device)  # bitsandbytes quantizes the weight as it moves it


def _import_bitsandbytes():
    if not bitsandbytes_installed():
        raise ConfigError("quantization_config=BitsAndBytesConfig: it needs the bitsandbytes package, which is not "
                          "installed (pip install bitsandbytes); formers' own weight-only schemes are "
                          "TorchAoConfig('int8_weight_only') and TorchAoConfig('int4_weight_only')")
    import bitsandbytes

    return bitsandbytes


def _skip_list(model: nn.Module, config: BitsAndBytesConfig) -> list[str]:
    return list(config.llm_int8_skip_modules) if config.llm_int8_skip_modules else output_head_names(model)


def quantize_with_bitsandbytes(model: nn.Module, config: BitsAndBytesConfig) -> int:
    """Swap the model's linear layers for bitsandbytes' quantized ones, in place; returns how many."""
    bnb = _import_bitsandbytes()
    skip = _skip_list(model, config)
    replaced = swap_linears(model, lambda name: _skipped(name, skip),
                            lambda name, linear: _quantized_linear(bnb, linear, config, linear.weight.device),
                            reference_kinds=("linear", "conv1d"))  # 4.45 swaps GPT-2's Conv1D layers too
    model.config.quantization_config = config
    return replaced


_QUANT_STATE = "weight.quant_state.bitsandbytes__"
_NESTED = {"weight.nested_absmax", "weight.nested_quant_map"}


def weight_parts(config: BitsAndBytesConfig) -> set[str]:
    """The parts a saved bitsandbytes layer has below its name (its bias aside), under these settings."""
    if config.load_in_8bit:
        return {"weight", "SCB"}
    parts = {"weight", "weight.absmax", "weight.quant_map", _QUANT_STATE + config.bnb_4bit_quant_type}
    return parts | _NESTED if config.bnb_4bit_use_double_quant else parts


def stored_dtype(config: BitsAndBytesConfig) -> torch.dtype:
    """The dtype of a saved bitsandbytes layer's weight under these settings."""
    return torch.int8 if config.load_in_8bit else _storage(config)


@contextmanager
def canonical_4bit_layers(model: nn.Module) -> Iterator[None]:
    """Within the block, every 4-bit layer that bitsandbytes repacked for its AVX512_BF16 CPU kernel holds an
    unpacked copy of its state in the saved layout (see the module doc), so that state_dict() takes that copy and
    bitsandbytes' own unpacking, which would corrupt the layer, does not run; the packed state is put back after."""
    repacked = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            repacked.append((weight, weight.data, state))
    if not repacked:
        yield
        return
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    try:
        for weight, data, state in repacked:
            unpacked = copy.copy(state)  # the inverse below sets attributes on it, never on the layer's own state
            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(data, unpacked)
            if not unpacked.nested:  # (double quantization is re-derived from the ordered scales by the inverse itself)
                unpacked.absmax = state.absmax.t().reshape(-1).float()  # [K / block, N] bfloat16 -> the blocks in order
        yield
    finally:
        for weight, data, state in repacked:
            weight.data, weight.quant_state = data, state


class PrequantizedLayers:
    """Rebuilds the bitsandbytes layers of a checkpoint saved with them, in place of the (meta) model's linear
    layers, as their parts stream past; every other tensor passes through."""

    def __init__(self, model: nn.Module, config: BitsAndBytesConfig, dtype: torch.dtype, device: torch.device):
        self.bnb, self.model, self.config = _import_bitsandbytes(), model, config
        self.dtype, self.device = dtype, device
        skip = _skip_list(model, config)
        self.layers = {name: module for name, module in model.named_modules()
                       if isinstance(module, nn.Linear) and not _skipped(name, skip)
                       and reference_kind(model, name) in ("linear", "conv1d")}  # as quantize_with_bitsandbytes
        self.weight_parts = weight_parts(config)
        self.pending: dict[str, dict[str, Tensor]] = {}

    def _needed(self, parts: dict[str, Tensor]) -> set[str]:
        """The parts a layer needs: with double quantization, a layer whose quant_state has no second quantization
        (split from a fused checkpoint layer: bitsandbytes_layout.py) has no nested parts."""
        state = next((value for key, value in parts.items() if key.startswith(_QUANT_STATE)), None)
        if state is None or not self.config.bnb_4bit_use_double_quant:
            return self.weight_parts
        from bitsandbytes.utils import unpack_tensor_to_dict

        return self.weight_parts if "nested_offset" in unpack_tensor_to_dict(state) else self.weight_parts - _NESTED

    def _layer_part(self, key: str) -> tuple[str, str] | None:
        for part in (*self.weight_parts, "bias", "weight_format"):
            name = key[:-len(part) - 1]
            if key.endswith("." + part) and name in self.layers:
                return name, part
        return None

    def stream(self, tensors: Iterable[tuple[str, Tensor]]) -> Iterator[tuple[str, Tensor]]:
        for key, value in tensors:
            found = self._layer_part(key)
            if found is None:
                yield key, value
                continue
            name, part = found
            if part == "weight_format":  # bitsandbytes' record of its int8 layout; the CPU layout is row-major
                continue
            parts = self.pending.setdefault(name, {})
            parts[part] = value
            needed = self._needed(parts) | ({"bias"} if self.layers[name].bias is not None else set())
            if needed <= parts.keys():
                self.model.set_submodule(name, self._build(name, self.pending.pop(name)))
        if self.pending:
            name, parts = next(iter(self.pending.items()))
            missing = sorted(self.weight_parts - parts.keys())
            raise CheckpointError(f"bitsandbytes checkpoint: layer {name!r} lacks {missing} (config.json's "
                                  f"quantization_config says {self.config.quantization_method()})")

    def _build(self, name: str, parts: dict[str, Tensor]) -> nn.Module:
        bnb, config, linear = self.bnb, self.config, self.layers[name]
        weight = parts.pop("weight")
        stored = stored_dtype(config)
        if weight.dtype != stored:
            raise CheckpointError(f"bitsandbytes checkpoint: {name}.weight is {weight.dtype}; config.json's "
                                  f"quantization_config ({config.quantization_method()}) stores it as {stored}")
        module = _layer(bnb, linear, config)
        if config.load_in_8bit:
            module.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False).to(self.device)
            module.weight.SCB = parts.pop("SCB").float().to(self.device)
        else:
            stats = {part.removeprefix("weight."): parts.pop(part) for part in list(parts) if part != "bias"}
            module.weight = bnb.nn.Params4bit.from_prequantized(weight, stats, requires_grad=False, device=self.device)
        if linear.bias is not None:
            module.bias = nn.Parameter(parts.pop("bias").to(self.device, self.dtype), requires_grad=False)
        return module
