"""Small per-step operations of CPU decoding computed in C++ on the calling thread (kernels.cpp), each with
torch's exact result.

Once a decode step's weights have streamed through the caches, every ATen call that follows pays for cold
code and data (tens of microseconds for an op on a few hundred values), and torch's reductions over a
vocabulary-wide row open an OpenMP region whose worker then spins against the decode pool. These functions
return torch's own result wherever the kernels do not apply.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .linear import _module

_DECODE_POSITIONS = 8  # rotary tables for at most this many positions (one decode step of up to 8 rows)
_TABLE_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def argmax_last(scores: Tensor) -> Tensor:
    """torch.argmax(scores, dim=-1), on the calling thread for a CPU float32 [N, V] tensor with a vocabulary-wide
    last dimension."""
    if (torch.compiler.is_compiling()  # first: a traced graph must not guard on the symbolic sizes below
            or scores.dtype != torch.float32 or scores.dim() != 2 or not scores.is_cpu or scores.requires_grad
            or scores.shape[-1] < (1 << 15)):
        return torch.argmax(scores, dim=-1)
    kernels = _module()
    return kernels.argmax_rows(scores) if kernels else torch.argmax(scores, dim=-1)


def rotary_tables(like: Tensor, position_ids: Tensor, inv_freq: Tensor, attention_scaling: float,
                  interleaved: bool) -> tuple[Tensor, Tensor] | None:
    """modeling/rope.py's (cos, sin) for a decode step's few CPU positions, or None (the caller's torch ops)."""
    if (torch.compiler.is_compiling()  # first: a traced graph must not guard on the symbolic sizes below
            or position_ids.numel() > _DECODE_POSITIONS or not like.is_cpu or not position_ids.is_cpu
            or position_ids.is_floating_point() or position_ids.dim() != 2 or inv_freq.dtype != torch.float32
            or not inv_freq.is_cpu or inv_freq.dim() != 1 or like.dtype not in _TABLE_DTYPES):
        return None
    kernels = _module()
    if not kernels or not kernels.rotary_available():
        return None
    return tuple(kernels.rotary_tables(position_ids, inv_freq, float(attention_scaling), like.dtype, interleaved))

