"""Checkpoints quantized with GPTQ, read without optimum or auto-gptq.

A GPTQ checkpoint (config.json `quantization_config` with quant_method "gptq", auto-gptq's "gptq" layout, which
4.45 loads through optimum) stores each quantized linear layer as four tensors:
- `qweight` int32 [K * bits / 32, out]: the layer's codes along its inputs, 32 / bits per word (3 bits: 32 codes
  in 3 words), low bits first;
- `qzeros` int32 [groups, out * bits / 32]: each group's zero point, packed the same way along the outputs, stored
  minus one (auto-gptq adds the one back);
- `scales` float16 [groups, out];
- `g_idx` int32 [K]: the group of each input (input // group_size, or any order with act-order / desc_act).
The weight is w[k, n] = scale[g_idx[k], n] * (code[k, n] - zero[g_idx[k], n]), auto-gptq's own formula.
prequantized.py turns each layer into that weight at load, in the model's dtype (the weights 4.45.2 computes with),
or into llama.cpp blocks.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError
from .package_configs import GPTQConfig, package_config
from .prequantized import Layer

NAME = "GPTQ"
PARTS = ("qweight", "qzeros", "scales", "g_idx")
BITS = (2, 3, 4, 8)


def loading_config(value: Any) -> GPTQConfig | None:
    """A GPTQConfig passed to from_pretrained (4.45's docs pass one with loading options such as use_exllama): kept
    until the checkpoint's own config says whether it is a GPTQ checkpoint, which loads; else it is refused."""
    value = package_config(value)
    return value if isinstance(value, GPTQConfig) else None


def check(recorded: dict[str, Any]) -> int:
    """The checkpoint's bits, once its layout is one formers reads."""
    bits = recorded.get("bits")
    if bits not in BITS:
        raise CheckpointError(f"config.json quantization_config (GPTQ) bits: expected one of {list(BITS)}, "
                              f"got {bits!r}")
    layout = recorded.get("checkpoint_format", "gptq")
    if layout != "gptq":
        raise CheckpointError(f"config.json quantization_config (GPTQ) checkpoint_format {layout!r}: formers reads "
                              "auto-gptq's 'gptq' layout (the one transformers 4.45 loads)")
    return bits


def unpack(words: Tensor, bits: int, dim: int) -> Tensor:
    """int32 words -> the codes they hold (int64), 32 / bits per word along `dim`, read as one little-endian stream
    of `bits`-bit fields (so a 3-bit code may straddle two words)."""
    words = words.movedim(dim, -1).to(torch.int64) & 0xFFFFFFFF
    if 32 % bits == 0:
        shifts = torch.arange(0, 32, bits, dtype=torch.int64)
        codes = ((words.unsqueeze(-1) >> shifts) & (2 ** bits - 1)).flatten(-2)
    else:  # bit by bit: [..., words, 32] -> [..., codes, bits]
        stream = ((words.unsqueeze(-1) >> torch.arange(32, dtype=torch.int64)) & 1).flatten(-2)
        codes = (stream.unflatten(-1, (-1, bits)) << torch.arange(bits, dtype=torch.int64)).sum(-1)
    return codes.movedim(-1, dim)


def layer(parts: dict[str, Tensor], bits: int, name: str) -> Layer:
    """One layer's four parts unpacked; the zero point is the stored value plus one (a stored 2^bits - 1 means
    2^bits, as auto-gptq's kernels read it)."""
    codes, zeros = unpack(parts["qweight"], bits, 0), unpack(parts["qzeros"], bits, 1) + 1
    return Layer(codes, zeros, parts["scales"], parts["g_idx"].long(), bits, f"GPTQ layer {name}")
