"""Quantization configs a 4.45 user passes as `from_pretrained(..., quantization_config=...)`.

`TorchAoConfig` (transformers' name for torchao's weight-only schemes) is what formers implements
itself, without torchao: "int8_weight_only" (per-output-channel int8), "int4_weight_only" (int4 in
groups of `group_size` input columns, with a scale and a zero per group) and "int8_dynamic_activation_int8_weight"
(the int8 weights times activations quantized to int8 per token as they arrive). `BitsAndBytesConfig` and
`QuantoConfig` run through their packages when installed (bitsandbytes.py, quanto.py). The other 4.45
configs (GPTQ, AWQ, AQLM, EETQ, HQQ, FBGEMM FP8, compressed-tensors) exist so 4.45 code imports and
constructs them; loading with one raises a ConfigError that says what formers supports instead
(`check_quantization_config`).
"""
from __future__ import annotations

import copy
import importlib.util
from typing import Any

import torch

from ..errors import ConfigError

WEIGHT_ONLY_TYPES = ("int8_weight_only", "int4_weight_only", "int8_dynamic_activation_int8_weight")
INT4_GROUP_SIZES = (32, 64, 128, 256)  # what torch's int4 CPU kernel accepts


class TorchAoConfig:
    """Weight-only quantization applied at load: `TorchAoConfig("int4_weight_only", group_size=32)`."""

    quant_method = "torchao"

    def __init__(self, quant_type: str, modules_to_not_convert: list[str] | None = None, **kwargs: Any):
        if quant_type not in WEIGHT_ONLY_TYPES:
            raise ConfigError(f"TorchAoConfig quant_type: expected one of {WEIGHT_ONLY_TYPES}, got {quant_type!r}")
        unknown = set(kwargs) - {"group_size", "inner_k_tiles"}
        if unknown:
            raise ConfigError(f"TorchAoConfig: unexpected arguments {sorted(unknown)}; expected group_size")
        group_size = kwargs.get("group_size", 128)
        if quant_type == "int4_weight_only" and group_size not in INT4_GROUP_SIZES:
            raise ConfigError(f"TorchAoConfig group_size: expected one of {INT4_GROUP_SIZES}, got {group_size!r}")
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

    def to_dict(self) -> dict[str, Any]:
        return {"quant_method": self.quant_method, "quant_type": self.quant_type,
                "modules_to_not_convert": self.modules_to_not_convert, "kwargs": copy.deepcopy(self.kwargs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TorchAoConfig":
        return cls(data["quant_type"], data.get("modules_to_not_convert"), **(data.get("kwargs") or {}))

    def __repr__(self) -> str:
        return f"TorchAoConfig({self.to_dict()})"


class _ForeignConfig:
    """A 4.45 config whose method formers does not run itself; it only records the arguments."""

    quant_method: str = ""
    package: str = ""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs

    def to_dict(self) -> dict[str, Any]:
        return {"quant_method": self.quant_method, **self.kwargs}


class BitsAndBytesConfig(_ForeignConfig):
    """transformers 4.45's bitsandbytes settings; from_pretrained runs them through the bitsandbytes package when
    it is installed (quantization/bitsandbytes.py)."""

    quant_method, package = "bitsandbytes", "bitsandbytes"

    def __init__(self, load_in_8bit: bool = False, load_in_4bit: bool = False, llm_int8_threshold: float = 6.0,
                 llm_int8_skip_modules: list[str] | None = None, llm_int8_enable_fp32_cpu_offload: bool = False,
                 llm_int8_has_fp16_weight: bool = False, bnb_4bit_compute_dtype: Any = None,
                 bnb_4bit_quant_type: str = "fp4", bnb_4bit_use_double_quant: bool = False,
                 bnb_4bit_quant_storage: Any = None, **kwargs: Any):
        if not isinstance(load_in_8bit, bool) or not isinstance(load_in_4bit, bool):
            raise ConfigError("BitsAndBytesConfig: load_in_8bit and load_in_4bit must be booleans")
        if load_in_8bit and load_in_4bit:
            raise ConfigError("BitsAndBytesConfig: load_in_4bit and load_in_8bit are both True; choose one")
        if bnb_4bit_quant_type not in ("fp4", "nf4"):
            raise ConfigError(f"BitsAndBytesConfig: bnb_4bit_quant_type {bnb_4bit_quant_type!r}; expected 'fp4' or 'nf4'")
        settings = dict(load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit, llm_int8_threshold=llm_int8_threshold,
                        llm_int8_skip_modules=llm_int8_skip_modules,
                        llm_int8_enable_fp32_cpu_offload=llm_int8_enable_fp32_cpu_offload,
                        llm_int8_has_fp16_weight=llm_int8_has_fp16_weight,
                        bnb_4bit_compute_dtype=_torch_dtype(bnb_4bit_compute_dtype, "bnb_4bit_compute_dtype"),
                        bnb_4bit_quant_type=bnb_4bit_quant_type, bnb_4bit_use_double_quant=bnb_4bit_use_double_quant,
                        bnb_4bit_quant_storage=_torch_dtype(bnb_4bit_quant_storage, "bnb_4bit_quant_storage"))
        super().__init__(**settings)
        self.__dict__.update(settings)

    def is_quantizable(self) -> bool:
        return self.load_in_8bit or self.load_in_4bit

    def quantization_method(self) -> str | None:
        if self.load_in_8bit:
            return "llm_int8"
        if self.load_in_4bit:
            return self.bnb_4bit_quant_type
        return None

    def to_dict(self) -> dict[str, Any]:
        return {name: str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else value
                for name, value in super().to_dict().items()}


def _torch_dtype(value: Any, field: str) -> Any:
    """None, a torch dtype or its name (as 4.45 accepts) -> None or the dtype."""
    if value is None or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and isinstance(getattr(torch, value, None), torch.dtype):
        return getattr(torch, value)
    raise ConfigError(f"BitsAndBytesConfig: {field} must be a torch dtype or its name, got {value!r}")


QUANTO_WEIGHTS = ("float8", "int8", "int4", "int2")
QUANTO_ACTIVATIONS = (None, "int8", "float8")


class QuantoConfig(_ForeignConfig):
    """transformers 4.45's quanto settings; from_pretrained runs them through the quanto package when it is
    installed (quantization/quanto.py)."""

    quant_method, package = "quanto", "quanto"

    def __init__(self, weights: str = "int8", activations: str | None = None,
                 modules_to_not_convert: list[str] | None = None, **kwargs: Any):
        if weights not in QUANTO_WEIGHTS:
            raise ConfigError(f"QuantoConfig weights: expected one of {QUANTO_WEIGHTS}, got {weights!r}")
        if activations not in QUANTO_ACTIVATIONS:
            raise ConfigError(f"QuantoConfig activations: expected one of {QUANTO_ACTIVATIONS}, got {activations!r}")
        settings = dict(weights=weights, activations=activations, modules_to_not_convert=modules_to_not_convert)
        super().__init__(**settings)
        self.__dict__.update(settings)


def _recorded_config(name: str, quant_method: str, package: str) -> type[_ForeignConfig]:
    """A 4.45 config class whose arguments formers records; loading with it raises a ConfigError naming `package`."""
    return type(name, (_ForeignConfig,), {"quant_method": quant_method, "package": package, "__module__": __name__,
                                          "__doc__": f"transformers 4.45's {name}, recorded but not run by formers"})


GPTQConfig = _recorded_config("GPTQConfig", "gptq", "auto_gptq")
AwqConfig = _recorded_config("AwqConfig", "awq", "awq")
AqlmConfig = _recorded_config("AqlmConfig", "aqlm", "aqlm")
EetqConfig = _recorded_config("EetqConfig", "eetq", "eetq")
HqqConfig = _recorded_config("HqqConfig", "hqq", "hqq")
FbgemmFp8Config = _recorded_config("FbgemmFp8Config", "fbgemm_fp8", "fbgemm_gpu")
CompressedTensorsConfig = _recorded_config("CompressedTensorsConfig", "compressed-tensors", "compressed_tensors")

_FOREIGN = {cls.quant_method: cls for cls in (BitsAndBytesConfig, QuantoConfig, GPTQConfig, AwqConfig, AqlmConfig,
                                              EetqConfig, HqqConfig, FbgemmFp8Config, CompressedTensorsConfig)}


def package_config(value: Any) -> _ForeignConfig | None:
    """A 4.45 package config (BitsAndBytesConfig, QuantoConfig, ...) given as the object or as its dict (a
    config.json's `quantization_config`), else None."""
    if isinstance(value, dict) and value.get("quant_method") in _FOREIGN:
        return _FOREIGN[value["quant_method"]](**{k: v for k, v in value.items() if k != "quant_method"})
    return value if isinstance(value, _ForeignConfig) else None


def check_quantization_config(value: Any) -> TorchAoConfig | None:
    """Normalise `quantization_config` (object or dict) to a TorchAoConfig, or raise a ConfigError that
    names the method and what formers offers instead."""
    if value is None:
        return None
    if isinstance(value, dict):
        method = value.get("quant_method")
        if method == "torchao":
            return TorchAoConfig.from_dict(value)
        if method in _FOREIGN:
            value = package_config(value)
        elif method != "formers_gguf":
            raise ConfigError(f"quantization_config: quant_method {method!r} is not supported; expected 'torchao'")
        else:
            return None  # a saved keep_quantized GGUF model: its tensors say how each layer is stored
    if isinstance(value, TorchAoConfig):
        return value
    if isinstance(value, _ForeignConfig):
        installed = importlib.util.find_spec(value.package) is not None
        reason = (f"the {value.package} package is installed, but formers does not drive it" if installed
                  else f"it needs the {value.package} package, which is not installed")
        raise ConfigError(f"quantization_config={type(value).__name__}: {reason}. formers quantizes weights itself "
                          "with TorchAoConfig('int8_weight_only') or TorchAoConfig('int4_weight_only', "
                          "group_size=32), or loads llama.cpp's Q8_0/Q4_0/Q4_K GGUF files with keep_quantized=True; "
                          "BitsAndBytesConfig and QuantoConfig run when their packages are installed")
    raise ConfigError(f"quantization_config: expected a TorchAoConfig or its dict, got {type(value).__name__}")
