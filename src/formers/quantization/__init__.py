"""Weight-only quantization: int8 / int4 linear layers on torch's CPU kernels (see linear.py).

from_pretrained options (transformers 4.45 names, plus one beyond 4.45):
- `quantization_config=TorchAoConfig("int8_weight_only")` or `TorchAoConfig("int4_weight_only",
  group_size=32)`: quantize a full-precision checkpoint while it loads;
- `gguf_file=..., keep_quantized=True`: keep llama.cpp's Q8_0 / Q4_0 / Q4_1 / Q4_K weights quantized
  instead of dequantizing them (4.45 always dequantizes);
- a folder saved from a quantized model reloads quantized (its config.json records how);
- `quantization_config=BitsAndBytesConfig(...)` / `QuantoConfig(...)` / `HqqConfig(...)`: the bitsandbytes /
  quanto / hqq package's layers, when it is installed;
- a GPTQ or AWQ checkpoint (config.json's quant_method "gptq" / "awq") loads without their packages, dequantized
  or, with keep_quantized=True, as llama.cpp blocks (prequantized.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from ..errors import ConfigError
from ..loading.key_map import KeyMap
from . import awq, bitsandbytes_layout, gptq, prequantized
from .apply import KEPT_GGUF_TYPES, LinearQuantizer
from .bitsandbytes import (PrequantizedLayers, as_bitsandbytes_config, bitsandbytes_installed, canonical_4bit_layers,
                           quantize_with_bitsandbytes, stored_dtype, weight_parts)
from .config import (AqlmConfig, AwqConfig, BitsAndBytesConfig, CompressedTensorsConfig, EetqConfig,
                     FbgemmFp8Config, GPTQConfig, HqqConfig, QuantizationConfigMixin, QuantoConfig, TorchAoConfig,
                     check_quantization_config, package_config)
from .package_configs import recorded_settings
from .hqq import as_hqq_config, quantize_with_hqq
from .linear import QuantizedLinear
from .quanto import as_quanto_config, quantize_with_quanto

__all__ = ["AqlmConfig", "AwqConfig", "BitsAndBytesConfig", "CompressedTensorsConfig", "EetqConfig", "FbgemmFp8Config",
           "GPTQConfig", "HqqConfig", "QuantizationConfigMixin", "QuantoConfig", "TorchAoConfig", "QuantizedLinear",
           "LoadQuantization", "canonical_4bit_layers", "checkpoint_state", "pop_quantization",
           "quantized_memory_bytes", "recorded_settings"]


@dataclass
class LoadQuantization:
    """The quantization requested by one from_pretrained call."""

    config: TorchAoConfig | None = None
    keep_quantized: bool = False
    # bitsandbytes' / quanto's / hqq's layers put in after the load, or a GPTQ / AWQ config's loading options
    package: BitsAndBytesConfig | QuantoConfig | HqqConfig | GPTQConfig | AwqConfig | None = None

    @property
    def gguf_keep_types(self) -> tuple[str, ...]:
        return KEPT_GGUF_TYPES if self.keep_quantized else ()

    def check_keep(self, from_gguf: bool, config: Any) -> None:
        """keep_quantized=True needs weights that are quantized already: a GGUF file's or a GPTQ / AWQ
        checkpoint's."""
        if self.keep_quantized and not from_gguf and \
                prequantized.format_of(getattr(config, "quantization_config", None)) is None:
            raise ConfigError("keep_quantized=True keeps a GGUF file's or a GPTQ / AWQ checkpoint's quantized weights; "
                              "pass gguf_file=... too, or quantization_config=TorchAoConfig(...) to quantize this "
                              "checkpoint")

    def to_model(self, model: nn.Module, key_map: KeyMap | None, tensors: Iterable, dtype: torch.dtype) -> Iterable:
        """The checkpoint's tensors under formers' names (`key_map.to_model`); a checkpoint saved with bitsandbytes'
        layers has their states split or renamed as the key map splits or renames their weights; a GPTQ / AWQ
        checkpoint's layers come as their dequantized weights (prequantized.py), or with keep_quantized=True, where
        the key map moves whole rows (renames, fused q/k/v splits), as the Q4_0 / Q8_0 blocks that hold them
        exactly."""
        recorded = getattr(model.config, "quantization_config", None)
        reader = prequantized.format_of(recorded)
        if reader is not None:
            def keep(key: str, rows: int) -> bool:
                return self.keep_quantized and (key_map is None or key_map.moves_whole_rows(key, rows, model.config))

            tensors = prequantized.dequantize_stream(tensors, reader, recorded, dtype,
                                                     key_map.stores_transposed if key_map else lambda key: False, keep)
        if key_map is None:
            return tensors
        saved = package_config(recorded)
        if isinstance(saved, BitsAndBytesConfig):
            return bitsandbytes_layout.to_model(tensors, key_map, model.config, weight_parts(saved),
                                                stored_dtype(saved))
        return key_map.to_model(tensors, model.config)

    def stream(self, model: nn.Module, tensors: Iterable, dtype: torch.dtype, device: torch.device) -> Iterator:
        """Wrap the weight stream; when it is exhausted, record the scheme in model.config (for save)."""
        model_config = model.config
        recorded = getattr(model_config, "quantization_config", None)  # config.json's
        if prequantized.format_of(recorded) is not None:  # its layers were dequantized by to_model: a plain model
            del model_config.quantization_config
            recorded = None
        elif isinstance(self.package, (GPTQConfig, AwqConfig)):  # (4.45 code passes one to load such a checkpoint)
            method = self.package.quant_method.upper()
            raise ConfigError(f"quantization_config={type(self.package).__name__}: quantizing a full-precision "
                              f"checkpoint with {method} runs calibration data through the model (on a GPU in "
                              f"4.45), which formers does not do; it reads {method} checkpoints (config.json "
                              f"quant_method {self.package.quant_method!r}) and quantizes weights itself with "
                              "TorchAoConfig('int8_weight_only') or TorchAoConfig('int4_weight_only', group_size=32)")
        saved = package_config(recorded)
        if isinstance(saved, BitsAndBytesConfig):  # saved with bitsandbytes' layers: they load as saved (as in 4.45)
            self.package = None
            model_config.quantization_config = saved  # the object, as 4.45 keeps it
            yield from PrequantizedLayers(model, saved, dtype, device).stream(tensors)
            return
        config = self.config or check_quantization_config(recorded)
        quantizer = LinearQuantizer(model, config, dtype, device)
        yield from quantizer.stream(tensors)
        if quantizer.replaced:
            model_config.quantization_config = config if config is not None else recorded or {
                "quant_method": "formers_gguf", "kept_types": list(KEPT_GGUF_TYPES)}


    def finish(self, model: nn.Module) -> None:
        """What runs on the loaded model: bitsandbytes', quanto's or hqq's layers, if asked; then the attributes
        4.45 sets on a quantized model (`is_quantized`, `quantization_method`, bitsandbytes' `is_loaded_in_4bit` /
        `is_loaded_in_8bit`), which PEFT and training code read."""
        if isinstance(self.package, BitsAndBytesConfig):
            quantize_with_bitsandbytes(model, self.package)
        elif isinstance(self.package, QuantoConfig):
            quantize_with_quanto(model, self.package)
        elif isinstance(self.package, HqqConfig):
            quantize_with_hqq(model, self.package, model.dtype)
        recorded = recorded_settings(model.config)
        if recorded:
            model.is_quantized, model.quantization_method = True, recorded.get("quant_method")
            if recorded.get("quant_method") == "bitsandbytes":
                model.is_loaded_in_4bit = bool(recorded.get("load_in_4bit"))
                model.is_loaded_in_8bit = bool(recorded.get("load_in_8bit"))


def pop_quantization(kwargs: dict[str, Any]) -> LoadQuantization:
    """Take quantization_config / keep_quantized out of from_pretrained's kwargs (errors name the argument)."""
    value = kwargs.pop("quantization_config", None)
    keep = bool(kwargs.pop("keep_quantized", False))
    flags = {name: kwargs.pop(name) for name in ("load_in_8bit", "load_in_4bit") if name in kwargs}
    if any(flags.values()):  # 4.45's older spelling of BitsAndBytesConfig(load_in_8bit=True)
        if value is not None:
            raise ConfigError("from_pretrained: pass load_in_8bit / load_in_4bit inside quantization_config, not "
                              "beside it")
        value = BitsAndBytesConfig(**flags)
    bnb_config = as_bitsandbytes_config(value)
    if bnb_config is not None and bitsandbytes_installed():
        if not bnb_config.is_quantizable():
            raise ConfigError("quantization_config=BitsAndBytesConfig: set load_in_8bit=True or load_in_4bit=True")
        return LoadQuantization(None, keep, bnb_config)
    package = (as_quanto_config(value) or as_hqq_config(value) or gptq.loading_config(value)
               or awq.loading_config(value))
    if package is not None:
        return LoadQuantization(None, keep, package)
    return LoadQuantization(check_quantization_config(value), keep)


def quantized_memory_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers (shared tensors counted once)."""
    seen = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


def checkpoint_state(model: nn.Module, state: dict[str, torch.Tensor], key_map: KeyMap) -> dict[str, torch.Tensor]:
    """`key_map.to_checkpoint` of the model's state dict, bitsandbytes' layers joined or renamed along (as 4.45
    saves them: one state per checkpoint layer)."""
    package = recorded_settings(model.config).get("quant_method")
    if package == "bitsandbytes":
        return bitsandbytes_layout.to_checkpoint(model, state, key_map)
    return key_map.to_checkpoint(state, model.config)
