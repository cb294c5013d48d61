"""Checkpoints quantized with AWQ (AutoAWQ's "gemm" layout, which 4.45 loads through autoawq on a GPU), read
without autoawq.

config.json's `quantization_config` has quant_method "awq", bits 4, group_size, zero_point true, version "gemm"
(or "exllama": the same tensors, read by another GPU kernel); each quantized linear layer is three tensors:
- `qweight` int32 [inputs, outputs / 8]: eight 4-bit codes per word along the outputs, the word's fields (low
  first) holding outputs 0, 2, 4, 6, 1, 3, 5, 7 of its eight;
- `qzeros` int32 [inputs / group_size, outputs / 8]: each group's zero point, packed the same way;
- `scales` float16 [inputs / group_size, outputs].
w[k, n] = scale[k // group_size, n] x (code[k, n] - zero[k // group_size, n]), AutoAWQ's formula; prequantized.py
turns each layer into that weight at load or into llama.cpp blocks (Q8_0: q = code - zero, exactly).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError
from .package_configs import AwqConfig, package_config
from .prequantized import Layer

NAME = "AWQ"
PARTS = ("qweight", "qzeros", "scales")
FIELD_OUTPUTS = (0, 2, 4, 6, 1, 3, 5, 7)  # the output (of a word's eight) that each 4-bit field holds, low first
OUTPUT_FIELDS = [FIELD_OUTPUTS.index(output) for output in range(8)]  # the field that holds each output
LAYOUTS = ("gemm", "exllama")  # versions whose checkpoints hold the tensors above


def loading_config(value: Any) -> AwqConfig | None:
    """An AwqConfig passed to from_pretrained (4.45's AWQ guide passes one with loading options such as do_fuse or
    version="exllama"): taken as such when the checkpoint's own config says AWQ, else refused."""
    value = package_config(value)
    return value if isinstance(value, AwqConfig) else None


def check(recorded: dict[str, Any]) -> int:
    """The checkpoint's group size, once its settings are ones formers reads."""
    what = "config.json quantization_config (AWQ)"
    if recorded.get("bits", 4) != 4:
        raise CheckpointError(f"{what} bits: expected 4 (AutoAWQ's layers hold 4-bit codes), got "
                              f"{recorded.get('bits')!r}")
    if recorded.get("backend", "autoawq") != "autoawq":
        raise CheckpointError(f"{what} backend {recorded.get('backend')!r}: formers reads AutoAWQ's checkpoints "
                              "(backend 'autoawq'), not llm-awq's")
    version = str(recorded.get("version", "gemm")).lower()
    if version not in LAYOUTS:
        raise CheckpointError(f"{what} version {version!r}: formers reads the 'gemm' layout (also saved as "
                              f"'exllama'), not {version!r}")
    if not recorded.get("zero_point", True):
        raise CheckpointError(f"{what} zero_point false: formers reads AutoAWQ's layers with zero points")
    group_size = recorded.get("group_size", 128)
    if not isinstance(group_size, int) or group_size <= 0:
        raise CheckpointError(f"{what} group_size: expected a positive int, got {group_size!r}")
    return group_size


def unpack(words: Tensor) -> Tensor:
    """int32 words [rows, columns] -> 4-bit codes [rows, columns x 8] (int64) in output order."""
    fields = (words.to(torch.int64).unsqueeze(-1) >> torch.arange(0, 32, 4)) & 15  # [rows, columns, field]
    return fields[..., OUTPUT_FIELDS].flatten(-2)


def layer(parts: dict[str, Tensor], group_size: int, name: str) -> Layer:
    codes, zeros = unpack(parts["qweight"]), unpack(parts["qzeros"])
    what = f"AWQ layer {name}"
    if codes.shape[0] % group_size:
        raise CheckpointError(f"{what}: qweight has {codes.shape[0]} inputs, no multiple of group_size {group_size}")
    return Layer(codes, zeros, parts["scales"], torch.arange(codes.shape[0]) // group_size, 4, what)
