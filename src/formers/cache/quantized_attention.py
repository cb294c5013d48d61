"""Attention straight over a quantized KV history, without dequantizing it.

With keys stored per block of R tokens as  k[t, d] = c[t, d] * s[blk, d] + m[blk, d]  and values per
token and channel group as  v[t, d] = c[t, d] * s[t, g(d)] + m[t, g(d)]:

    q . k[t]      = sum_d (q[d] * s[blk, d]) * c[t, d]  +  sum_d q[d] * m[blk, d]
    sum_t p[t] v[t, d] = sum_t (p[t] * s[t, g]) * c[t, d]  +  sum_t p[t] * m[t, g]

so the scales fold into the small query / probability side and the packed codes enter the matmuls
as they are (one shift-and-mask and one cast per packed slice): no zero-point/scale arithmetic, no
concatenation and no re-quantization of the history per step, unlike transformers 4.45.

Shapes: B batch, Hkv kv heads, M = n_rep * T query rows per kv head, N quantized tokens
(= nblk * R), r residual tokens, D head dim, G value groups of g channels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .quantize import packed_slice, per_byte


@dataclass
class QuantizedHistory:
    """One layer's quantized tokens (views of the filled part of its buffers)."""

    key_codes: torch.Tensor      # [B, Hkv, N, D / per_byte] uint8, packed along channels
    key_scale: torch.Tensor      # [B, Hkv, nblk, D]
    key_min: torch.Tensor        # [B, Hkv, nblk, D]
    value_codes: torch.Tensor    # [B, Hkv, N / per_byte, D] uint8, packed along tokens within each block
    value_scale: torch.Tensor    # [B, Hkv, N, G]
    value_min: torch.Tensor      # [B, Hkv, N, G]
    nbits: int
    block: int                   # R, tokens per key block

    @property
    def length(self) -> int:
        return self.key_codes.shape[2]


def _key_scores(q: torch.Tensor, history: QuantizedHistory) -> torch.Tensor:
    """q [B, Hkv, M, D] -> scores [B, Hkv, M, N] against the quantized keys (unscaled by 1/sqrt(D))."""
    batch, heads, rows, dim = q.shape
    nblk, block, k = history.key_scale.shape[2], history.block, per_byte(history.nbits)
    folded = q[:, :, None] * history.key_scale[:, :, :, None, :]  # [B, Hkv, nblk, M, D]
    codes = history.key_codes.view(batch, heads, nblk, block, dim // k)
    width = dim // k
    scores = folded[..., :width] @ packed_slice(codes, history.nbits, 0).to(q.dtype).transpose(-1, -2)
    for j in range(1, k):
        part = packed_slice(codes, history.nbits, j).to(q.dtype).transpose(-1, -2)
        scores = scores + folded[..., j * width:(j + 1) * width] @ part
    bias = q[:, :, None] @ history.key_min[:, :, :, :, None]  # [B, Hkv, nblk, M, 1]
    scores = scores + bias
    return scores.permute(0, 1, 3, 2, 4).reshape(batch, heads, rows, nblk * block)


def _value_output(p: torch.Tensor, history: QuantizedHistory) -> torch.Tensor:
    """Probabilities over the quantized tokens p [B, Hkv, M, N] -> output [B, Hkv, M, D]."""
    batch, heads, rows, tokens = p.shape
    dim, groups = history.value_codes.shape[-1], history.value_scale.shape[-1]
    nblk, block, k = tokens // history.block, history.block, per_byte(history.nbits)
    width, group = block // k, dim // groups
    folded = p[..., None] * history.value_scale[:, :, None]  # [B, Hkv, M, N, G]
    folded = folded.view(batch, heads, rows, nblk, block, groups)
    codes = history.value_codes.view(batch, heads, nblk, width, groups, group)
    out = None
    for j in range(k):  # slice j: tokens j*width..(j+1)*width of every block
        weights = folded[:, :, :, :, j * width:(j + 1) * width]  # [B, Hkv, M, nblk, width, G]
        weights = weights.permute(0, 1, 5, 2, 3, 4).reshape(batch, heads, groups, rows, nblk * width)
        values = packed_slice(codes, history.nbits, j).to(p.dtype)  # [B, Hkv, nblk, width, G, g]
        values = values.permute(0, 1, 4, 2, 3, 5).reshape(batch, heads, groups, nblk * width, group)
        part = weights @ values  # [B, Hkv, G, M, g]
        out = part if out is None else out + part
    bias = (p[..., None] * history.value_min[:, :, None]).sum(3)  # [B, Hkv, M, G]
    out = out + bias.permute(0, 1, 3, 2)[..., None]
    return out.permute(0, 1, 3, 2, 4).reshape(batch, heads, rows, dim)


def quantized_attention(query: torch.Tensor, history: QuantizedHistory, residual_keys: torch.Tensor,
                        residual_values: torch.Tensor, mask: torch.Tensor | None,
                        scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """query [B, H, T, D] over [quantized history ; residual [B, Hkv, r, D]] with mask [B, 1, T, S] or None
    (None: causal among the last T keys); scores scaled by `scale` (default 1/sqrt(D)). Returns output
    [B, H, T, D] and weights [B, H, T, S]."""
    batch, num_heads, length, dim = query.shape
    heads = residual_keys.shape[1]
    n_rep = num_heads // heads
    q = query.reshape(batch, heads, n_rep * length, dim)  # rows ordered (rep, t) within each kv head
    scores = torch.cat([_key_scores(q, history), q @ residual_keys.transpose(-1, -2)], dim=-1)
    scores = scores.view(batch, heads, n_rep, length, -1) * (1.0 / math.sqrt(dim) if scale is None else scale)
    if mask is not None:
        scores = scores + mask[:, :, None, :, : scores.shape[-1]]
    elif length > 1:
        total = scores.shape[-1]
        future = torch.ones(length, length, dtype=torch.bool, device=query.device).triu(1)
        scores[..., total - length:] = scores[..., total - length:].masked_fill(future, float("-inf"))
    p = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype).view(batch, heads, n_rep * length, -1)
    n = history.length
    out = _value_output(p[..., :n], history) + p[..., n:] @ residual_values
    return out.view(batch, num_heads, length, dim), p.view(batch, num_heads, length, -1)
