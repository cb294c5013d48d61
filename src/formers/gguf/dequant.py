"""Dequantize ggml tensors to float32 with vectorised torch ops (no Python loop over blocks).

Each quantized type stores a row as blocks of a fixed byte size (`BLOCK_LAYOUT`). A block holds one or
two fp16 scales and packed small integers; K-quants (Q2_K..Q6_K) are super-blocks of 256 values split
into 16 or 8 sub-blocks, each with its own 4- to 8-bit scale (and min). The formulas follow ggml's
format; the operations are done in the same order as the `gguf` package's reference dequantizer so
the float32 results are bit-identical to it (tests/gguf/test_dequant.py checks every type). The IQ types
(IQ1_S .. IQ4_XS, as transformers 4.45 lists them) are decoded by that package itself.

Shape legend: n blocks; values come out as [n, values per block] and are reshaped by the caller.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

QK_K = 256
# type name -> (values per block, bytes per block)
BLOCK_LAYOUT: dict[str, tuple[int, int]] = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2),
    "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34),
    "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210),
    # importance-matrix types, decoded by the gguf package (`_by_the_package`)
    "IQ1_S": (256, 50), "IQ1_M": (256, 56), "IQ2_XXS": (256, 66), "IQ2_XS": (256, 74), "IQ2_S": (256, 82),
    "IQ3_XXS": (256, 98), "IQ3_S": (256, 110), "IQ4_NL": (32, 18), "IQ4_XS": (256, 136),
}


def _f16(blocks: Tensor, start: int) -> Tensor:
    """The fp16 scalar at byte `start` of every block, as float32 [n, 1]."""
    return blocks[:, start:start + 2].contiguous().view(torch.float16).float()


def _bits(x: Tensor, shifts: list[int], mask: int) -> Tensor:
    """x [..., 1, m] >> each shift, masked: [..., len(shifts), m] (int32)."""
    shift = torch.tensor(shifts, dtype=torch.int32).view(len(shifts), 1)
    return (x.to(torch.int32) >> shift) & mask


def _nibbles(qs: Tensor) -> Tensor:
    """16 packed bytes per block -> 32 values: low nibbles first, then high nibbles ([n, 32] int32)."""
    return _bits(qs.unsqueeze(1), [0, 4], 0xF).flatten(1)


def _high_bits32(qh: Tensor) -> Tensor:
    """4 bytes (a little-endian uint32) per block -> its 32 bits as [n, 32] int32."""
    word = qh.contiguous().view(torch.int32)  # [n, 1]
    return (word >> torch.arange(32, dtype=torch.int32)) & 1


def _q4_0(b: Tensor) -> Tensor:
    return _f16(b, 0) * (_nibbles(b[:, 2:18]) - 8).float()


def _q4_1(b: Tensor) -> Tensor:
    return _f16(b, 0) * _nibbles(b[:, 4:20]).float() + _f16(b, 2)


def _q5_0(b: Tensor) -> Tensor:
    q = _nibbles(b[:, 6:22]) | (_high_bits32(b[:, 2:6]) << 4)
    return _f16(b, 0) * (q - 16).float()


def _q5_1(b: Tensor) -> Tensor:
    q = _nibbles(b[:, 8:24]) | (_high_bits32(b[:, 4:8]) << 4)
    return _f16(b, 0) * q.float() + _f16(b, 2)


def _q8_0(b: Tensor) -> Tensor:
    return _f16(b, 0) * b[:, 2:34].contiguous().view(torch.int8).float()


def _q2_k(b: Tensor) -> Tensor:
    n = b.shape[0]
    scales = b[:, :16].to(torch.int32)
    d, dmin = _f16(b, 80), _f16(b, 82)
    dl = (d * (scales & 0xF).float()).view(n, 16, 1)
    ml = (dmin * (scales >> 4).float()).view(n, 16, 1)
    q = _bits(b[:, 16:80].reshape(n, 2, 1, 32), [0, 2, 4, 6], 3).view(n, 16, 16).float()
    return (dl * q - ml).view(n, QK_K)


def _q3_k(b: Tensor) -> Tensor:
    n = b.shape[0]
    packed = b[:, 96:108]
    low = _bits(packed[:, :8].reshape(n, 1, 8), [0, 4], 0xF).view(n, 16)
    high = _bits(packed[:, 8:].reshape(n, 1, 4), [0, 2, 4, 6], 3).view(n, 16)
    scales = ((low | (high << 4)) - 32).float()
    dl = (_f16(b, 108) * scales).view(n, 16, 1)
    ql = _bits(b[:, 32:96].reshape(n, 2, 1, 32), [0, 2, 4, 6], 3).view(n, 16, 16)
    hmask = _bits(b[:, :32].reshape(n, 1, 1, 32), list(range(8)), 1).view(n, 16, 16)
    q = (ql - ((hmask ^ 1) << 2)).float()  # a clear high bit subtracts 4
    return (dl * q).view(n, QK_K)


def _k_scales_mins(packed: Tensor) -> tuple[Tensor, Tensor]:
    """Q4_K/Q5_K: 12 bytes -> 8 six-bit scales and 8 six-bit mins per super-block ([n, 8] int32 each)."""
    n = packed.shape[0]
    p = packed.to(torch.int32).view(n, 3, 4)
    d, m, md = p[:, 0], p[:, 1], p[:, 2]
    scales = torch.cat([d & 0x3F, (md & 0xF) | ((d >> 2) & 0x30)], dim=1)
    mins = torch.cat([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], dim=1)
    return scales, mins


def _k_affine(b: Tensor, q: Tensor) -> Tensor:
    """Q4_K/Q5_K: value = d * scale * q - dmin * min per 32-value sub-block; q is [n, 8, 32]."""
    n = b.shape[0]
    scales, mins = _k_scales_mins(b[:, 4:16])
    d = (_f16(b, 0) * scales.float()).view(n, 8, 1)
    dm = (_f16(b, 2) * mins.float()).view(n, 8, 1)
    return (d * q.float() - dm).view(n, QK_K)


def _q4_k(b: Tensor) -> Tensor:
    n = b.shape[0]
    return _k_affine(b, _bits(b[:, 16:144].reshape(n, 4, 1, 32), [0, 4], 0xF).view(n, 8, 32))


def _q5_k(b: Tensor) -> Tensor:
    n = b.shape[0]
    low = _bits(b[:, 48:176].reshape(n, 4, 1, 32), [0, 4], 0xF).view(n, 8, 32)
    high = _bits(b[:, 16:48].reshape(n, 1, 1, 32), list(range(8)), 1).view(n, 8, 32)
    return _k_affine(b, low | (high << 4))


def _q6_k(b: Tensor) -> Tensor:
    n = b.shape[0]
    scales = b[:, 192:208].contiguous().view(torch.int8).float()
    d = (_f16(b, 208) * scales).view(n, 16, 1)
    low = _bits(b[:, :128].reshape(n, 2, 1, 64), [0, 4], 0xF).view(n, 8, 32)
    high = _bits(b[:, 128:192].reshape(n, 2, 1, 32), [0, 2, 4, 6], 3).view(n, 8, 32)
    q = ((low | (high << 4)) - 32).view(n, 16, 16).float()
    return (d * q).view(n, QK_K)


_BLOCK_DEQUANTIZERS: dict[str, Callable[[Tensor], Tensor]] = {
    "Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1, "Q8_0": _q8_0,
    "Q2_K": _q2_k, "Q3_K": _q3_k, "Q4_K": _q4_k, "Q5_K": _q5_k, "Q6_K": _q6_k,
}


def _by_the_package(type_name: str) -> Callable[[Tensor], Tensor]:
    """The gguf package's own decoder of a type: the IQ types look their values up in grids of a few thousand
    entries that the package carries (the data of llama.cpp's tables); a copy here would add nothing."""
    def decode(blocks: Tensor) -> Tensor:
        import gguf

        values = gguf.quants.dequantize(blocks.numpy(), gguf.GGMLQuantizationType[type_name])
        return torch.from_numpy(values).reshape(blocks.shape[0], -1)
    return decode


_BLOCK_DEQUANTIZERS.update({name: _by_the_package(name) for name in BLOCK_LAYOUT if name.startswith("IQ")})
SUPPORTED_TYPES = tuple(BLOCK_LAYOUT)
_CHUNK_BLOCKS = 1 << 15  # blocks decoded per step of a large tensor (1M values of 32-blocks, 8M of K-quants)


def dequantize(raw: Tensor, type_name: str, shape: tuple[int, ...]) -> Tensor:
    """Raw tensor data (as stored; uint8 blocks for quantized types) -> float32 tensor of `shape`."""
    if type_name == "F32":
        return raw.view(torch.float32).reshape(shape)
    if type_name == "F16":
        return raw.view(torch.float16).float().reshape(shape)
    if type_name == "BF16":
        return raw.view(torch.bfloat16).float().reshape(shape)
    block, type_size = BLOCK_LAYOUT[type_name]
    blocks = raw.reshape(-1, type_size)
    decode = _BLOCK_DEQUANTIZERS[type_name]
    if blocks.shape[0] <= _CHUNK_BLOCKS:
        return decode(blocks).reshape(shape)
    out = torch.empty(blocks.shape[0], block, dtype=torch.float32)
    for start in range(0, blocks.shape[0], _CHUNK_BLOCKS):  # bounds the int32/float temporaries (~3x the chunk)
        out[start:start + _CHUNK_BLOCKS] = decode(blocks[start:start + _CHUNK_BLOCKS])
    return out.reshape(shape)


# --- 4-bit types as (values 0..15, scale, zero) with w = (q - 8) * scale + zero per 32 columns -------------
INT4_TYPES = ("Q4_0", "Q4_1", "Q4_K")


def int4_parts(raw: Tensor, type_name: str, shape: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """Raw Q4_0/Q4_1/Q4_K rows -> q int32 [N, K], scale and zero float32 [N, K / 32], so that
    (q - 8) * scale + zero reproduces the weight (exactly for Q4_0; Q4_1 and Q4_K's zero is a rounded sum)."""
    rows, cols = shape
    _, type_size = BLOCK_LAYOUT[type_name]
    b = raw.reshape(-1, type_size)
    if type_name == "Q4_K":
        n = b.shape[0]
        q = _bits(b[:, 16:144].reshape(n, 4, 1, 32), [0, 4], 0xF).reshape(n, 8, 32)
        scales, mins = _k_scales_mins(b[:, 4:16])
        scale = _f16(b, 0) * scales.float()  # [n, 8]
        zero = 8 * scale - _f16(b, 2) * mins.float()
    else:
        d = _f16(b, 0)
        q = _nibbles(b[:, 2:18] if type_name == "Q4_0" else b[:, 4:20])
        scale = d
        zero = torch.zeros_like(d) if type_name == "Q4_0" else _f16(b, 2) + 8 * d
    return q.reshape(rows, cols), scale.reshape(rows, cols // 32), zero.reshape(rows, cols // 32)
