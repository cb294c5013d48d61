"""Quantization configs a 4.45 user passes as `from_pretrained(..., quantization_config=...)`.

`TorchAoConfig` (transformers' name for torchao's weight-only schemes) is what formers implements
itself, without torchao: "int8_weight_only" (per-output-channel int8), "int4_weight_only" (int4 in
groups of `group_size` input columns, with a scale and a zero per group) and "int8_dynamic_activation_int8_weight"
(the int8 weights times activations quantized to int8 per token as they arrive). The configs of quantization
packages (bitsandbytes, quanto, GPTQ, AWQ, ...) live in package_configs.py; `check_quantization_config` says
which of them formers runs.
"""
from __future__ import annotations

import copy
import importlib.util
from typing import Any

from ..errors import ConfigError
from .config_base import QuantizationConfigMixin
from .package_configs import (AqlmConfig, AwqConfig, BitsAndBytesConfig, CompressedTensorsConfig, EetqConfig,
                              FbgemmFp8Config, GPTQConfig, HqqConfig, PACKAGE_CONFIGS, PackageConfig, QuantoConfig,
                              package_config, quant_method_of)

__all__ = ["AqlmConfig", "AwqConfig", "BitsAndBytesConfig", "CompressedTensorsConfig", "EetqConfig", "FbgemmFp8Config",
           "GPTQConfig", "HqqConfig", "QuantizationConfigMixin", "QuantoConfig", "TorchAoConfig",
           "check_quantization_config", "package_config"]

WEIGHT_ONLY_TYPES = ("int8_weight_only", "int4_weight_only", "int8_dynamic_activation_int8_weight")
INT4_GROUP_SIZES = (32, 64, 128, 256)  # what torch's int4 CPU kernel accepts
# the keyword arguments each scheme takes (torchao's own functions'; torchao 0.4 named inner_k_tiles directly)
SCHEME_ARGUMENTS = {"int4_weight_only": ("group_size", "inner_k_tiles"), "int8_weight_only": (),
                    "int8_dynamic_activation_int8_weight": ()}


class TorchAoConfig(QuantizationConfigMixin):
    """Weight-only quantization applied at load: `TorchAoConfig("int4_weight_only", group_size=32)`."""

    quant_method = "torchao"

    def __init__(self, quant_type: str, modules_to_not_convert: list[str] | None = None, **kwargs: Any):
        if quant_type not in WEIGHT_ONLY_TYPES:
            raise ConfigError(f"TorchAoConfig quant_type: expected one of {WEIGHT_ONLY_TYPES}, got {quant_type!r}")
        unknown = sorted(set(kwargs) - set(SCHEME_ARGUMENTS[quant_type]))
        if unknown:
            raise ConfigError(f"TorchAoConfig({quant_type!r}): unexpected arguments {unknown}; expected "
                              f"{list(SCHEME_ARGUMENTS[quant_type]) or 'none'}")
        group_size = kwargs.get("group_size", 128)
        if quant_type == "int4_weight_only" and group_size not in INT4_GROUP_SIZES:
            raise ConfigError(f"TorchAoConfig group_size: expected one of {INT4_GROUP_SIZES}, got {group_size!r}")
        self.quant_method = type(self).quant_method
        self.quant_type = quant_type
        self.modules_to_not_convert = modules_to_not_convert
        self.kwargs = dict(kwargs)

    @property
    def scheme(self) -> str:
        return {"int4_weight_only": "int4", "int8_weight_only": "int8"}.get(self.quant_type, "int8_dynamic")

    @property
    def group_size(self) -> int:
        return int(self.kwargs.get("group_size", 128))

    def skipped(self) -> list[str]:
        """Module names kept in full precision (default: the LM head, as transformers' quantizers do)."""
        return list(self.modules_to_not_convert) if self.modules_to_not_convert is not None else ["lm_head"]

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], return_unused_kwargs: bool = False, **kwargs: Any) -> Any:
        """4.45 writes the scheme's arguments under "kwargs"; a dict that spreads them out reads too."""
        data = {key: value for key, value in config_dict.items()
                if key not in ("quant_method", "kwargs") and not key.startswith("_")}
        return super().from_dict({**data, **copy.deepcopy(config_dict.get("kwargs") or {})}, return_unused_kwargs,
                                 **kwargs)

    def __repr__(self) -> str:  # 4.45's: the scheme as a call
        return f"{self.quant_type}({', '.join(f'{key}={value}' for key, value in self.kwargs.items())})"


def check_quantization_config(value: Any) -> TorchAoConfig | None:
    """Normalise `quantization_config` (object or dict) to a TorchAoConfig, or raise a ConfigError that
    names the method and what formers offers instead."""
    if value is None:
        return None
    if isinstance(value, dict):
        method = quant_method_of(value)
        if method == "torchao":
            return TorchAoConfig.from_dict(value)
        if method in PACKAGE_CONFIGS:
            value = package_config(value)
        elif method != "formers_gguf":
            raise ConfigError(f"quantization_config: quant_method {method!r} is not supported; expected 'torchao'")
        else:
            return None  # a saved keep_quantized GGUF model: its tensors say how each layer is stored
    if isinstance(value, TorchAoConfig):
        return value
    if isinstance(value, PackageConfig):
        installed = importlib.util.find_spec(value.package) is not None
        reason = (f"the {value.package} package is installed, but formers does not drive it" if installed
                  else f"it needs the {value.package} package, which is not installed")
        raise ConfigError(f"quantization_config={type(value).__name__}: {reason}. formers quantizes weights itself "
                          "with TorchAoConfig('int8_weight_only') or TorchAoConfig('int4_weight_only', "
                          "group_size=32), or loads llama.cpp's Q8_0/Q4_0/Q4_K GGUF files with keep_quantized=True; "
                          "BitsAndBytesConfig, QuantoConfig and HqqConfig run when their packages are installed")
    raise ConfigError(f"quantization_config: expected a TorchAoConfig or its dict, got {type(value).__name__}")
