"""The bfloat16 fused layer's small steps computed as torch computes them (kernels/torch_steps.h): SiLU equal to
at::silu and RMSNorm's mean of squares equal to x.pow(2).mean(-1), bit for bit, for the models' widths and for
lengths where torch's loops change path; the once-per-process checks that let the layer use them agree here."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from formers.kernels import linear as kernel_linear

pytestmark = pytest.mark.skipif(not kernel_linear.kernels_available(), reason="no C++ toolchain here")
needs_bf16 = pytest.mark.skipif(not kernel_linear.torch_order_bfloat16(),
                                reason="no bfloat16 kernels (AVX512_BF16 or AVX2): these steps stay torch's")


def _kernels():
    return kernel_linear._module()


@needs_bf16
@pytest.mark.parametrize("shape", [(1, 1536), (8, 1536), (1, 2560), (3, 100), (1, 63), (2, 64, 65)])
def test_silu_equal_to_torch(shape):
    """Model widths (whole 64-value stretches) and lengths with a scalar tail; the check over every bfloat16 value
    agrees, and a length torch would split across threads keeps torch's call."""
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(len(shape))) * 4).bfloat16()
    assert torch.equal(_kernels().bf16_silu(x), F.silu(x))
    assert _kernels().bf16_silu_reproduces_torch(x.numel())
    assert not _kernels().bf16_silu_reproduces_torch(1 << 16)


@needs_bf16
@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("width", [8, 9, 31, 32, 33, 100, 127, 576, 960, 1536, 2048, 2560, 4095])
def test_mean_squares_equal_to_torch(rows, width):
    """Widths around the 8-lane vectors, the four-vector steps and the 16-step cascade levels. The data spans
    magnitudes, so a sum in another order (float64, rounded) differs in many of these outputs."""
    gen = torch.Generator().manual_seed(rows * width)
    x = torch.randn(rows, width, generator=gen) * torch.exp(2 * torch.randn(rows, width, generator=gen))
    want = x.pow(2).mean(-1)
    assert torch.equal(_kernels().bf16_mean_squares(x), want)
    if rows * width < 32768:
        assert _kernels().bf16_mean_squares_reproduces_torch(rows, width)


@needs_bf16
def test_mean_squares_order_is_not_luck():
    """Across the widths above, summing in float64 and rounding once gives other results in many rows."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 576, generator=gen) * torch.exp(2 * torch.randn(64, 576, generator=gen))
    other = (x.double().pow(2).mean(-1)).float()
    assert (other != x.pow(2).mean(-1)).sum() > 8
    assert torch.equal(_kernels().bf16_mean_squares(x), x.pow(2).mean(-1))


@needs_bf16
def test_shapes_torch_sums_otherwise_stay_torchs():
    """Fewer than 8 values (torch's scalar loop) and rows torch would split across threads keep torch's call."""
    assert not _kernels().bf16_mean_squares_reproduces_torch(1, 7)
    assert not _kernels().bf16_mean_squares_reproduces_torch(1, 1 << 15)
