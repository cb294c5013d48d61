"""transformers 4.45's module path of the quantization configs (`transformers.utils.quantization_config`)."""
from __future__ import annotations

from enum import Enum

from ..quantization.config import (AqlmConfig, AwqConfig, BitsAndBytesConfig, CompressedTensorsConfig, EetqConfig,
                                   FbgemmFp8Config, GPTQConfig, HqqConfig, QuantizationConfigMixin, QuantoConfig,
                                   TorchAoConfig)


class QuantizationMethod(str, Enum):
    """The `quant_method` strings a config.json's `quantization_config` names (4.45's values)."""

    BITS_AND_BYTES = "bitsandbytes"
    GPTQ = "gptq"
    AWQ = "awq"
    AQLM = "aqlm"
    QUANTO = "quanto"
    EETQ = "eetq"
    HQQ = "hqq"
    COMPRESSED_TENSORS = "compressed-tensors"
    FBGEMM_FP8 = "fbgemm_fp8"
    TORCHAO = "torchao"


__all__ = ["AqlmConfig", "AwqConfig", "BitsAndBytesConfig", "CompressedTensorsConfig", "EetqConfig", "FbgemmFp8Config",
           "GPTQConfig", "HqqConfig", "QuantizationConfigMixin", "QuantizationMethod", "QuantoConfig", "TorchAoConfig"]
