"""bfloat16 decode attention in torch's order (kernels/attention_bf16.h): equal to torch's
scaled_dot_product_attention bit for bit at lengths around every boundary of that order (4, 16 and 32 keys, the
512-key blocks), with and without left-padding masks and with grouped heads; the real models' shapes take it (the
probe agrees with torch), and an attention summed in another order differs, so equality is not luck."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from formers.kernels import linear as kernel_linear

pytestmark = pytest.mark.skipif(not kernel_linear.kernels_available(), reason="no C++ toolchain here")
needs_bf16 = pytest.mark.skipif(not kernel_linear.torch_order_bfloat16(),
                                reason="no bfloat16 kernels (AVX512_BF16 or AVX2): bfloat16 attention stays torch's")
LENGTHS = [1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 200, 255, 256, 511, 512, 513, 700, 1025]
# (rows, heads, kv heads, head size, masked)
CASES = [(1, 9, 3, 64, False), (3, 9, 3, 64, True), (2, 4, 4, 128, True), (1, 15, 5, 64, False), (8, 9, 3, 64, True),
         (2, 8, 2, 32, False)]


def _kernels():
    return kernel_linear._module()


def _operands(rows: int, heads: int, kv_heads: int, dim: int, masked: bool, seed: int, capacity: int = 1100):
    gen = torch.Generator().manual_seed(seed)
    keys = (torch.randn(rows, kv_heads, capacity, dim, generator=gen) * 2).bfloat16()  # scores spread over ~±10
    values = torch.randn(rows, kv_heads, capacity, dim, generator=gen).bfloat16()
    q = (torch.randn(rows, heads, dim, generator=gen) * 2).bfloat16()
    mask = None
    if masked:  # left padding: row b's first 3b positions, with the dtype's lowest value as 4.45's masks
        mask = torch.zeros(rows, 1, 1, capacity, dtype=torch.bfloat16)
        for b in range(1, rows):
            mask[b, ..., :3 * b] = torch.finfo(torch.bfloat16).min
    return q, keys, values, mask


def _torch(q, keys, values, mask, length: int, scale: float, dtype=torch.bfloat16):
    rows, heads, dim = q.shape
    out = F.scaled_dot_product_attention(
        q.to(dtype).view(rows, heads, 1, dim), keys[:, :, :length].to(dtype), values[:, :, :length].to(dtype),
        attn_mask=None if mask is None else mask[..., :length].to(dtype), scale=scale,
        enable_gqa=heads != keys.shape[1])
    return out.view(rows, heads, dim).bfloat16()


@needs_bf16
@pytest.mark.parametrize("rows, heads, kv_heads, dim, masked", CASES)
def test_equal_to_torch(rows, heads, kv_heads, dim, masked):
    q, keys, values, mask = _operands(rows, heads, kv_heads, dim, masked, seed=rows * heads + dim)
    scale = dim ** -0.5
    other_order = 0
    for length in LENGTHS:
        got = _kernels().bf16_attention(q, keys, values, mask, length - 1, scale)
        want = _torch(q, keys, values, mask, length, scale)
        assert torch.equal(got, want), f"length {length}: {(got != want).sum().item()} of {want.numel()} differ"
        other_order += (_torch(q, keys, values, mask, length, scale, torch.float32) != want).sum().item()
    # the same attention in float32 (other sums, weights not rounded) moves many outputs: equality is not luck
    assert other_order > 0.05 * len(LENGTHS) * q.numel()


@needs_bf16
@pytest.mark.parametrize("rows", [1, 8])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("heads, kv_heads, dim", [(9, 3, 64), (15, 5, 64), (4, 4, 128)])
def test_model_shapes_take_it(rows, heads, kv_heads, dim, masked):
    """SmolLM-135M's and -360M's attention shapes (and a 128-wide head) pass the probe against torch, so decoding
    uses this kernel, not torch's call."""
    mask = torch.zeros(1, dtype=torch.bfloat16) if masked else None
    assert _kernels().bf16_attention_reproduces_torch(rows, heads, kv_heads, dim, mask)


@needs_bf16
def test_shapes_it_cannot_sum_stay_torchs():
    """A head size that is not a multiple of the vector width (16 lanes with AVX-512, 8 with AVX2) and a boolean
    mask keep torch's own call."""
    assert not _kernels().bf16_attention_reproduces_torch(1, 8, 8, 12, None)
    assert not _kernels().bf16_attention_reproduces_torch(1, 9, 3, 64, torch.zeros(1, dtype=torch.bool))

