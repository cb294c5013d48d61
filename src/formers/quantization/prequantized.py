"""Checkpoints whose linear layers were quantized by another library (GPTQ: gptq.py, AWQ: awq.py), read without it.

Both formats store, per layer, integer codes, a zero point and a float16 scale per group of inputs, so that
w[k, n] = scale[group(k), n] x (code[k, n] - zero[group(k), n]). A format module unpacks its tensors into a
`Layer`; `dequantize_stream` turns each layer into its weight at load (the checkpoint then loads like any other
and `quantization_config` leaves the model's config, so a save writes a plain model), or keeps it as the
llama.cpp blocks that hold it exactly (`Layer.blocks`), which formers' decoding kernels compute on.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import Tensor

from ..errors import CheckpointError
from ..gguf.tensors import QuantizedBlocks


class Layer:
    """One layer's parts, unpacked and checked: codes [inputs, outputs], zero points [groups, outputs], float
    scales [groups, outputs] and each input's group (int64 [inputs])."""

    def __init__(self, codes: Tensor, zeros: Tensor, scales: Tensor, groups: Tensor, bits: int, what: str):
        self.codes, self.zeros, self.scales, self.groups, self.bits = codes, zeros, scales, groups, bits
        if self.codes.shape[0] != self.groups.numel() or self.zeros.shape != self.scales.shape or \
                self.codes.shape[1] != self.scales.shape[1]:
            raise CheckpointError(f"{what}: qweight / qzeros / scales unpack to codes {list(codes.shape)}, zero "
                                  f"points {list(zeros.shape)}, scales {list(scales.shape)} and groups "
                                  f"{list(groups.shape)}, which do not fit together")
        if self.groups.numel() and (self.groups.min() < 0 or self.groups.max() >= self.scales.shape[0]):
            raise CheckpointError(f"{what}: g_idx names groups outside 0..{self.scales.shape[0] - 1}")

    def weight(self, dtype: torch.dtype) -> Tensor:
        """[inputs, outputs] in `dtype`, computed in it as auto-gptq computes it: the scales cast to the model's
        dtype, then times the code minus the zero point (exact in float32; in float16 the same rounding as AutoAWQ,
        which computes in float16 whatever the model's dtype)."""
        return self.scales.to(dtype)[self.groups] * (self.codes - self.zeros[self.groups]).to(dtype)

    def blocks(self) -> QuantizedBlocks | None:
        """The weight as llama.cpp blocks of 32 inputs that formers' decoding kernels compute on, exactly:
        w = scale x (code - zero) is Q4_0's d x (q - 8) where every zero point is 8 (symmetric 4-bit GPTQ, the
        usual kind), else Q8_0's d x q with q = code - zero when that fits int8; d = the group's float16 scale.
        raw uint8 [outputs, inputs / 32 x block bytes], GGUF's row-major layout. None where no block layout holds the
        weight exactly (act-order, groups no multiple of 32, scales not float16, codes minus zeros beyond int8)."""
        inputs, outputs = self.codes.shape
        group_size = inputs // max(1, self.scales.shape[0])
        if inputs % 32 or group_size % 32 or self.scales.dtype != torch.float16 or \
                not torch.equal(self.groups, torch.arange(inputs) // group_size):
            return None
        values = (self.codes - self.zeros[self.groups]).t().reshape(outputs, inputs // 32, 32)  # [out, blocks, 32]
        if self.bits == 4 and bool((self.zeros == 8).all()):
            nibbles = (values + 8).to(torch.uint8)
            quants, type_name = nibbles[..., :16] | (nibbles[..., 16:] << 4), "Q4_0"  # byte j: j low, j + 16 high
        elif values.min() >= -128 and values.max() <= 127:
            quants, type_name = values.to(torch.int8).view(torch.uint8), "Q8_0"
        else:
            return None
        scales = self.scales.repeat_interleave(group_size // 32, dim=0)  # [blocks, out]
        scale_bytes = scales.t().contiguous().view(torch.uint8).reshape(outputs, inputs // 32, 2)
        return QuantizedBlocks(type_name, (outputs, inputs),
                               torch.cat([scale_bytes, quants], dim=-1).reshape(outputs, -1))


def format_of(recorded: Any) -> ModuleType | None:
    """The format module (gptq / awq) that reads a checkpoint with config.json's `quantization_config` `recorded`,
    or None where it is no such checkpoint."""
    from . import awq, gptq

    method = recorded.get("quant_method") if isinstance(recorded, dict) else None
    return {"gptq": gptq, "awq": awq}.get(method)


def dequantize_stream(tensors: Iterable[tuple[str, Tensor]], reader: ModuleType, recorded: dict[str, Any],
                      dtype: torch.dtype, transposed: Callable[[str], bool],
                      keep_blocks: Callable[[str, int], bool] = lambda key, rows: False
                      ) -> Iterator[tuple[str, Tensor | QuantizedBlocks]]:
    """The checkpoint's tensors with each quantized layer's parts (`reader.PARTS`) replaced by `<layer>.weight` in
    `dtype`, in nn.Linear's [out, in] orientation, or [in, out] where the checkpoint stores that layer transposed
    (`transposed(key)`: GPT-2's Conv1D; the key map turns it back). Where `keep_blocks(key, rows)` (never for a
    transposed layer: KeyMap.moves_whole_rows), layers that Q4_0 / Q8_0 blocks hold exactly come as those blocks
    instead (`Layer.blocks`), which the key map splits by rows where it splits the layer and the loader keeps."""
    settings = reader.check(recorded)
    pending: dict[str, dict[str, Tensor]] = {}
    layers = 0
    for key, tensor in tensors:
        layer, _, part = key.rpartition(".")
        if part not in reader.PARTS:
            yield key, tensor
            continue
        parts = pending.setdefault(layer, {})
        parts[part] = tensor
        if len(parts) == len(reader.PARTS):
            unpacked, name = reader.layer(pending.pop(layer), settings, layer), f"{layer}.weight"
            layers += 1
            kept = unpacked.blocks() if keep_blocks(name, unpacked.codes.shape[1]) else None
            if kept is not None:
                yield name, kept
                continue
            weight = unpacked.weight(dtype)
            yield name, weight if transposed(name) else weight.t().contiguous()
    if pending:
        layer, parts = next(iter(pending.items()))
        raise CheckpointError(f"{reader.NAME} layer {layer}: the checkpoint has {sorted(parts)} of "
                              f"{list(reader.PARTS)}")
    if not layers:
        raise CheckpointError(f"config.json's quantization_config says {reader.NAME}, but the checkpoint holds no "
                              f"{reader.NAME} layer (tensors named <layer>.{', <layer>.'.join(reader.PARTS)})")
