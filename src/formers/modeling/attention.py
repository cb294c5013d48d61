"""Multi-head self-attention (MHA, GQA, MQA), one module for every decoder family.

A family describes its attention with an `AttentionSpec` (head counts, biases, score scale, logit
softcap, sliding window, rotary style, optional q/k norms and clipping); kernels are looked up by
name (`attn_implementation`): "sdpa" (default) and "eager". A call that asks for attention weights,
or a spec SDPA cannot compute exactly (a logit softcap), takes the eager path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.linear import linear_group
from .layers import Linear
from .rope import apply_rotary


@dataclass(frozen=True)
class AttentionSpec:
    """What one layer's attention looks like; families derive it from their config (`layer_spec`)."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    o_bias: bool = False
    sliding_window: int | None = None  # None: global attention
    scale: float | None = None  # score scale; None means head_dim ** -0.5
    softcap: float | None = None  # scores -> softcap * tanh(scores / softcap) before the mask (Gemma2)
    rotary: str | None = "half"  # "half" (NeoX-style halves), "interleaved" (GPT-J pairs) or None
    rotary_in_float32: bool = False  # rotate q/k in float32 and cast back (Cohere; matters in bf16/fp16)
    clip_qkv: float | None = None  # clamp q/k/v projections to [-clip, clip] (OLMo)
    qk_norm: Callable[[], tuple[nn.Module, nn.Module]] | None = None  # builds (q_norm, k_norm)
    qk_norm_per_head: bool = True  # norms see [B, T, H, D] (True) or the flat projection [B, T, H*D]
    sdpa_ignores_softcap: bool = False  # 4.45's SDPA path of a family drops the softcap: do the same there
    fused_qkv: bool = False  # one `qkv_proj` [q; k; v] instead of three (Phi3's checkpoint layout; one matmul)
    # a family's own kernels where 4.45's numerics differ from the shared ones (Phi, GPT-NeoX, GPT-J)
    eager_kernel: Callable[..., "AttentionResult"] | None = None
    sdpa_kernel: Callable[..., "AttentionResult"] | None = None

    @property
    def score_scale(self) -> float:
        return self.head_dim ** -0.5 if self.scale is None else self.scale


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """[B, Hkv, S, D] -> [B, Hkv * n_rep, S, D]."""
    if n_rep == 1:
        return x
    batch, kv_heads, length, dim = x.shape
    return x[:, :, None].expand(batch, kv_heads, n_rep, length, dim).reshape(batch, kv_heads * n_rep, length, dim)


AttentionResult = tuple[torch.Tensor, torch.Tensor | None]  # output [B, H, T, D], weights [B, H, T, S] or None


@dataclass(frozen=True)
class KernelArgs:
    """Per-layer constants a kernel needs besides q/k/v and the mask."""

    n_rep: int
    scale: float
    softcap: float | None = None
    dropout: float = 0.0


def eager_attention(q, k, v, mask, args: KernelArgs) -> AttentionResult:
    k, v = repeat_kv(k, args.n_rep), repeat_kv(v, args.n_rep)
    scores = torch.matmul(q, k.transpose(2, 3)) * args.scale
    if args.softcap is not None:
        scores = torch.tanh(scores / args.softcap) * args.softcap
    if mask is not None:
        scores = scores + mask[:, :, :, : k.shape[-2]]
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    weights = F.dropout(weights, p=args.dropout, training=args.dropout > 0)
    return torch.matmul(weights, v), weights


def sdpa_attention(q, k, v, mask, args: KernelArgs) -> AttentionResult:
    if mask is not None:
        mask = mask[:, :, :, : k.shape[-2]]
    # CPU kernels take grouped heads directly (no copy); CUDA's fused kernels want them repeated.
    grouped = args.n_rep > 1 and q.device.type == "cpu"
    if args.n_rep > 1 and not grouped:
        k, v = repeat_kv(k, args.n_rep), repeat_kv(v, args.n_rep)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=args.dropout, is_causal=mask is None and q.shape[2] > 1,
        scale=args.scale, enable_gqa=grouped,
    )
    return out, None


ATTENTION_FUNCTIONS: dict[str, Callable[..., AttentionResult]] = {"eager": eager_attention, "sdpa": sdpa_attention}


class Attention(nn.Module):
    """hidden [B, T, C] -> [B, T, C]; keys/values go through the cache at `layer_idx`."""

    def __init__(self, hidden_size: int, spec: AttentionSpec, layer_idx: int, dropout: float = 0.0,
                 implementation: str = "sdpa"):
        super().__init__()
        self.spec = spec
        self.num_heads, self.num_kv_heads, self.head_dim = spec.num_heads, spec.num_kv_heads, spec.head_dim
        self.layer_idx, self.dropout, self.sliding_window = layer_idx, dropout, spec.sliding_window
        self.implementation = implementation
        q_size, kv_size = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
        if spec.fused_qkv:
            self.qkv_proj = Linear(hidden_size, q_size + 2 * kv_size, bias=spec.qkv_bias)
            self.qkv_sizes = (q_size, kv_size, kv_size)
        else:
            self.q_proj = Linear(hidden_size, q_size, bias=spec.qkv_bias)
            self.k_proj = Linear(hidden_size, kv_size, bias=spec.qkv_bias)
            self.v_proj = Linear(hidden_size, kv_size, bias=spec.qkv_bias)
        self.o_proj = Linear(spec.num_heads * spec.head_dim, hidden_size, bias=spec.o_bias)
        if spec.qk_norm is not None:
            self.q_norm, self.k_norm = spec.qk_norm()

    def _kernel(self, output_attentions: bool) -> tuple[Callable[..., AttentionResult], KernelArgs]:
        name = "eager" if output_attentions else self.implementation
        softcap = self.spec.softcap
        if name == "sdpa" and softcap is not None:
            if self.spec.sdpa_ignores_softcap:
                softcap = None
            else:
                name = "eager"
        args = KernelArgs(self.num_heads // self.num_kv_heads, self.spec.score_scale, softcap,
                          self.dropout if self.training else 0.0)
        own = self.spec.eager_kernel if name == "eager" else self.spec.sdpa_kernel
        return own or ATTENTION_FUNCTIONS[name], args

    def _project(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """hidden [B, T, C] -> q [B, H, T, D], k and v [B, Hkv, T, D] (before rotary)."""
        batch, length, _ = hidden.shape
        if self.spec.fused_qkv:
            q, k, v = self.qkv_proj(hidden).split(self.qkv_sizes, dim=-1)
        else:
            q, k, v = linear_group(hidden, (self.q_proj, self.k_proj, self.v_proj))  # one pass when decoding
        spec = self.spec
        if spec.qk_norm is not None and not spec.qk_norm_per_head:  # full-width norms, then the clamp (OLMoE)
            q, k = self.q_norm(q), self.k_norm(k)
        if spec.clip_qkv is not None:
            q, k, v = (t.clamp(-spec.clip_qkv, spec.clip_qkv) for t in (q, k, v))
        q = q.view(batch, length, self.num_heads, self.head_dim)
        k = k.view(batch, length, self.num_kv_heads, self.head_dim)
        if spec.qk_norm is not None and spec.qk_norm_per_head:
            q, k = self.q_norm(q), self.k_norm(k)
        v = v.view(batch, length, self.num_kv_heads, self.head_dim)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, hidden: torch.Tensor, cos: torch.Tensor | None, sin: torch.Tensor | None,
                mask: torch.Tensor | None, cache=None, cache_position: torch.Tensor | None = None,
                output_attentions: bool = False) -> AttentionResult:
        batch, length, _ = hidden.shape
        q, k, v = self._project(hidden)
        if self.spec.rotary is not None:
            interleaved = self.spec.rotary == "interleaved"
            if self.spec.rotary_in_float32 and q.dtype != torch.float32:
                q, k = (apply_rotary(t.float(), cos, sin, interleaved).to(t.dtype) for t in (q, k))
            else:
                q, k = apply_rotary(q, cos, sin, interleaved), apply_rotary(k, cos, sin, interleaved)
        kernel, args = self._kernel(output_attentions)
        if cache is None:
            out, weights = kernel(q, k, v, mask, args)
        else:  # the cache stores k/v and runs the kernel (or attends its own way, e.g. over quantized blocks)
            # the score scale lets caches that attend their own way (quantized blocks) scale like the kernel
            cache_kwargs = {"sin": sin, "cos": cos, "cache_position": cache_position, "scale": args.scale,
                            "softcap": args.softcap}
            out, weights = cache.attend(q, k, v, self.layer_idx, cache_kwargs, mask,
                                        lambda q_, k_, v_, m_: kernel(q_, k_, v_, m_, args))
        out = out.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        return self.o_proj(out), weights
