"""Native (pure torch) asymmetric min-max quantization for the KV cache, 2, 4 or 8 bits.

    x ~= code * scale + minimum,   code in [0, 2**nbits - 1],   one (scale, minimum) per group.

Codes are packed 8 // nbits to a byte *along the axis a matmul later reduces over*: slice j of that
axis (of length N / per_byte) sits in bits [j * nbits, (j + 1) * nbits). Reading slice j back is one
shift and one mask, and a matmul over the packed axis becomes a sum of per-slice matmuls, so the
packed history is never unpacked into one full tensor.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError

NATIVE_NBITS = (2, 4, 8)


def per_byte(nbits: int) -> int:
    """Codes stored in one byte."""
    if nbits not in NATIVE_NBITS:
        raise ConfigError(f"cache_config.nbits: the native backend supports {list(NATIVE_NBITS)}, got {nbits}")
    return 8 // nbits


def quantize(x: torch.Tensor, nbits: int, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes (uint8, shape of x) and (scale, minimum) reduced over `dim` (kept as size 1)."""
    low = x.amin(dim, keepdim=True)
    high = x.amax(dim, keepdim=True)
    scale = (high - low) / (2 ** nbits - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # constant group: every code is 0
    codes = ((x - low) / scale).round_().clamp_(0, 2 ** nbits - 1).to(torch.uint8)
    return codes, scale, low


def pack(codes: torch.Tensor, nbits: int, dim: int) -> torch.Tensor:
    """uint8 codes [..., N, ...] -> bytes [..., N / per_byte, ...] along `dim` (slice j in bits j*nbits...)."""
    slices = codes.chunk(per_byte(nbits), dim)
    packed = slices[0].clone()
    for j, part in enumerate(slices[1:], start=1):
        packed |= part << (j * nbits)
    return packed


def packed_slice(packed: torch.Tensor, nbits: int, j: int) -> torch.Tensor:
    """Codes of slice j (uint8, same shape as `packed`)."""
    if nbits == 8:
        return packed
    shifted = packed >> (j * nbits) if j else packed
    return shifted if j == per_byte(nbits) - 1 else shifted & (2 ** nbits - 1)


def unpack(packed: torch.Tensor, nbits: int, dim: int) -> torch.Tensor:
    """Inverse of `pack`."""
    return torch.cat([packed_slice(packed, nbits, j) for j in range(per_byte(nbits))], dim=dim)


def dequantize(packed: torch.Tensor, scale: torch.Tensor, minimum: torch.Tensor, nbits: int, dim: int,
               dtype: torch.dtype) -> torch.Tensor:
    """Full tensor back from packed codes; scale/minimum broadcast against the unpacked codes."""
    return unpack(packed, nbits, dim).to(dtype) * scale + minimum
