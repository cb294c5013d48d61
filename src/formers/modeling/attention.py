"""Grouped-query self-attention with rotary positions, one module for every decoder family.

Kernels are looked up by name (`attn_implementation`): "sdpa" (default) and "eager"; a call that
asks for attention weights always takes the eager path, as transformers does.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Linear
from .rope import apply_rotary


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, Hkv, S, D] -> [B, Hkv * n_rep, S, D]."""
    if n_rep == 1:
        return x
    batch, kv_heads, length, dim = x.shape
    return x[:, :, None].expand(batch, kv_heads, n_rep, length, dim).reshape(batch, kv_heads * n_rep, length, dim)


AttentionResult = tuple[torch.Tensor, torch.Tensor | None]  # output [B, H, T, D], weights [B, H, T, S] or None


def eager_attention(q, k, v, mask, n_rep: int, dropout: float, training: bool) -> AttentionResult:
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    weights = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(q.shape[-1])
    if mask is not None:
        weights = weights + mask[:, :, :, : k.shape[-2]]
    weights = F.softmax(weights, dim=-1, dtype=torch.float32).to(q.dtype)
    weights = F.dropout(weights, p=dropout, training=training)
    return torch.matmul(weights, v), weights


def sdpa_attention(q, k, v, mask, n_rep: int, dropout: float, training: bool) -> AttentionResult:
    if mask is not None:
        mask = mask[:, :, :, : k.shape[-2]]
    # CPU kernels take grouped heads directly (no copy); CUDA's fused kernels want them repeated.
    grouped = n_rep > 1 and q.device.type == "cpu"
    if n_rep > 1 and not grouped:
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout if training else 0.0,
        is_causal=mask is None and q.shape[2] > 1, enable_gqa=grouped,
    )
    return out, None


ATTENTION_FUNCTIONS: dict[str, Callable[..., AttentionResult]] = {"eager": eager_attention, "sdpa": sdpa_attention}


class Attention(nn.Module):
    """hidden [B, T, C] -> [B, T, C]; keys/values go through the cache at `layer_idx`."""

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, head_dim: int, layer_idx: int,
                 qkv_bias: bool = False, o_bias: bool = False, dropout: float = 0.0,
                 sliding_window: int | None = None, implementation: str = "sdpa"):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.layer_idx, self.dropout, self.sliding_window = layer_idx, dropout, sliding_window
        self.implementation = implementation
        self.q_proj = Linear(hidden_size, num_heads * head_dim, bias=qkv_bias)
        self.k_proj = Linear(hidden_size, num_kv_heads * head_dim, bias=qkv_bias)
        self.v_proj = Linear(hidden_size, num_kv_heads * head_dim, bias=qkv_bias)
        self.o_proj = Linear(num_heads * head_dim, hidden_size, bias=o_bias)

    def forward(self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache=None, cache_position: torch.Tensor | None = None,
                output_attentions: bool = False) -> AttentionResult:
        batch, length, _ = hidden.shape
        q = self.q_proj(hidden).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden).view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden).view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        kernel = ATTENTION_FUNCTIONS["eager" if output_attentions else self.implementation]
        n_rep, dropout = self.num_heads // self.num_kv_heads, self.dropout if self.training else 0.0
        if cache is None:
            out, weights = kernel(q, k, v, mask, n_rep, dropout, self.training)
        else:  # the cache stores k/v and runs the kernel (or attends its own way, e.g. over quantized blocks)
            cache_kwargs = {"sin": sin, "cos": cos, "cache_position": cache_position}
            out, weights = cache.attend(q, k, v, self.layer_idx, cache_kwargs, mask,
                                        lambda q_, k_, v_, m_: kernel(q_, k_, v_, m_, n_rep, dropout, self.training))
        out = out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.o_proj(out), weights
