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
formers turns each layer into that weight at load (the checkpoint then loads like any other; `quantization_config`
leaves the model's config, so a save writes a plain model): the weights 4.45.2 computes with, in the model's dtype.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor

from ..errors import CheckpointError
from .package_configs import GPTQConfig, package_config

PARTS = ("qweight", "qzeros", "scales", "g_idx")
BITS = (2, 3, 4, 8)


def is_gptq_checkpoint(recorded: Any) -> bool:
    return isinstance(recorded, dict) and recorded.get("quant_method") == "gptq"


def loading_config(value: Any) -> GPTQConfig | None:
    """A GPTQConfig passed to from_pretrained (4.45's docs pass one with loading options such as use_exllama): kept
    until the checkpoint's own config says whether it is a GPTQ checkpoint, which loads; else it is refused."""
    value = package_config(value)
    return value if isinstance(value, GPTQConfig) else None


def _check(recorded: dict[str, Any]) -> int:
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


class Layer:
    """One GPTQ layer's parts, unpacked and checked: codes [inputs, outputs], zero points [groups, outputs] (the
    stored value plus one: a stored 2^bits - 1 means 2^bits, as auto-gptq's kernels read it), float scales
    [groups, outputs] and each input's group."""

    def __init__(self, parts: dict[str, Tensor], bits: int, name: str):
        self.codes, self.zeros = unpack(parts["qweight"], bits, 0), unpack(parts["qzeros"], bits, 1) + 1
        self.scales, self.groups, self.bits = parts["scales"], parts["g_idx"].long(), bits
        if self.codes.shape[0] != self.groups.numel() or self.zeros.shape != self.scales.shape or \
                self.codes.shape[1] != self.scales.shape[1]:
            raise CheckpointError(f"GPTQ layer {name}: qweight {list(parts['qweight'].shape)}, qzeros "
                                  f"{list(parts['qzeros'].shape)}, scales {list(self.scales.shape)} and g_idx "
                                  f"{list(self.groups.shape)} do not fit together for {bits} bits")
        if self.groups.numel() and (self.groups.min() < 0 or self.groups.max() >= self.scales.shape[0]):
            raise CheckpointError(f"GPTQ layer {name}: g_idx names groups outside 0..{self.scales.shape[0] - 1}")

    def weight(self, dtype: torch.dtype) -> Tensor:
        """[inputs, outputs] in `dtype`, computed in it as 4.45 + auto-gptq compute it (the scales cast to the
        model's dtype, then times the code minus the zero point)."""
        return self.scales.to(dtype)[self.groups] * (self.codes - self.zeros[self.groups]).to(dtype)

    def blocks(self) -> Tensor | None:
        """The weight as llama.cpp blocks of 32 inputs that formers' decoding kernels compute on, exactly:
        w = scale x (code - zero) is Q4_0's d x (q - 8) where every zero point is 8 (symmetric 4-bit GPTQ, the
        usual kind), else Q8_0's d x q with q = code - zero when that fits int8; d = the group's float16 scale.
        uint8 [outputs, inputs / 32 x block bytes], GGUF's row-major layout. None where no block layout holds the
        weight exactly (act-order, groups no multiple of 32, scales not float16, codes minus zeros beyond int8)."""
        inputs, outputs = self.codes.shape
        group_size = inputs // max(1, self.scales.shape[0])
        if inputs % 32 or group_size % 32 or self.scales.dtype != torch.float16 or \
                not torch.equal(self.groups, torch.arange(inputs) // group_size):
            return None
        values = (self.codes - self.zeros[self.groups]).t().reshape(outputs, inputs // 32, 32)  # [out, blocks, 32]
        if self.bits == 4 and bool((self.zeros == 8).all()):
            nibbles = (values + 8).to(torch.uint8)
            quants = nibbles[..., :16] | (nibbles[..., 16:] << 4)  # byte j: value j low, value j + 16 high
        elif values.min() >= -128 and values.max() <= 127:
            quants = values.to(torch.int8).view(torch.uint8)
        else:
            return None
        scales = self.scales.repeat_interleave(group_size // 32, dim=0)  # [blocks, out]
        scale_bytes = scales.t().contiguous().view(torch.uint8).reshape(outputs, inputs // 32, 2)
        return torch.cat([scale_bytes, quants], dim=-1).reshape(outputs, -1)


def dequantize_stream(tensors: Iterable[tuple[str, Tensor]], recorded: dict[str, Any], dtype: torch.dtype,
                      transposed: Callable[[str], bool],
                      keep_blocks: Callable[[str], bool] = lambda key: False) -> Iterator[tuple[str, Tensor]]:
    """The checkpoint's tensors with each GPTQ layer's parts replaced by `<layer>.weight` in `dtype`, in
    nn.Linear's [out, in] orientation, or [in, out] where the checkpoint stores that layer transposed
    (`transposed(key)`: GPT-2's Conv1D; the key map turns it back). Where `keep_blocks(key)`, layers that Q4_0 /
    Q8_0 blocks hold exactly come as those blocks instead (`Layer.blocks`), which the loader keeps as they are."""
    bits = _check(recorded)
    pending: dict[str, dict[str, Tensor]] = {}
    layers = 0
    for key, tensor in tensors:
        layer, _, part = key.rpartition(".")
        if part not in PARTS:
            yield key, tensor
            continue
        parts = pending.setdefault(layer, {})
        parts[part] = tensor
        if len(parts) == len(PARTS):
            unpacked, name = Layer(pending.pop(layer), bits, layer), f"{layer}.weight"
            layers += 1
            kept = unpacked.blocks() if keep_blocks(name) and not transposed(name) else None
            if kept is not None:
                yield name, kept
                continue
            weight = unpacked.weight(dtype)
            yield name, weight if transposed(name) else weight.t().contiguous()
    if pending:
        layer, parts = next(iter(pending.items()))
        raise CheckpointError(f"GPTQ layer {layer}: the checkpoint has {sorted(parts)} of {list(PARTS)}")
    if not layers:
        raise CheckpointError("config.json's quantization_config says GPTQ, but the checkpoint holds no GPTQ layer "
                              f"(tensors named <layer>.{', <layer>.'.join(PARTS)})")
