"""The bfloat16 GEMV (kernels/bf16_match.h over gemv.h `run_bf16`): bfloat16 weights times bfloat16 inputs equal
torch's F.linear bit for bit, on random data and on mirrored data where any other summation order moves most
outputs; the per-shape probe that finds torch's order, and the switch that turns the kernels off."""
from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from formers.kernels import linear as kernel_linear

pytestmark = pytest.mark.skipif(not kernel_linear.kernels_available(), reason="no C++ toolchain here")
needs_bf16 = pytest.mark.skipif(not kernel_linear.torch_order_bfloat16(),
                                reason="no bfloat16 kernels (AVX512_BF16 or AVX2): bfloat16 products stay torch's")
# (M, N, K): every row count, K a multiple of 32, of 128, and not (a masked tail of 1 to 31), the model's shapes
SHAPES = [(1, 64, 64), (1, 49, 37), (2, 33, 100), (3, 200, 576), (4, 9, 31), (5, 576, 1536), (6, 11, 129),
          (7, 13, 33), (8, 1536, 576), (8, 7, 16), (1, 576, 1536), (2, 1000, 1000), (1, 300, 513), (3, 4096, 1536)]
# SmolLM-135M's and -360M's decode products (Q, K/V, O, gate/up, down, head) at one row and at eight
MODEL_SHAPES = [(m, n, k) for m in (1, 8) for n, k in [(576, 576), (192, 576), (1536, 576), (576, 1536), (49152, 576),
                                                       (960, 960), (320, 960), (2560, 960), (960, 2560)]]
U = 2.0 ** -24  # float32 unit roundoff


def _operands(m: int, n: int, k: int, seed: int, bias: bool):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(m, k, generator=gen) * torch.exp(torch.randn(k, generator=gen))).bfloat16()  # mixed magnitudes
    w = torch.randn(n, k, generator=gen).bfloat16()
    b = torch.randn(n, generator=gen).bfloat16() if bias else None
    return x, w, b


def _mirrored(m: int, n: int, k: int, seed: int):
    """x = [u, u], w rows [v, -v]: the exact sums are zero, so each output is the float32 rounding error of its
    partial sums, which another summation order changes in nearly every output."""
    gen = torch.Generator().manual_seed(seed)
    v, u = torch.randn(n, k // 2, generator=gen), torch.randn(m, k // 2, generator=gen)
    return torch.cat([u, u], 1).bfloat16(), torch.cat([v, -v], 1).bfloat16()


@needs_bf16
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_equal_to_torch(m, n, k, bias):
    x, w, b = _operands(m, n, k, seed=m * n + k, bias=bias)
    with torch.no_grad():
        got = kernel_linear.small_batch_linear(x, w, b)
        want = F.linear(x, w, b)
    assert got is not None and got.dtype == torch.bfloat16 and torch.equal(got, want)


@needs_bf16
@pytest.mark.parametrize("m, n, k", MODEL_SHAPES)
def test_model_shapes_sum_in_torch_order(m, n, k):
    """The real models' products take the kernel (a probe found torch's chunk, not the fallback) and equal torch's
    on mirrored data; a float32 sum in another order (torch's float32 matmul) differs there, so equality is not
    luck."""
    assert kernel_linear._module().bf16_torch_chunk(m, n, k, False) != 0
    x, w = _mirrored(m, n, k, seed=n + k)
    with torch.no_grad():
        got = kernel_linear.small_batch_linear(x, w, None)
        want = F.linear(x, w)
        other = F.linear(x.float(), w.float()).bfloat16()
    assert torch.equal(got, want)
    assert (other != want).double().mean().item() > 0.2


def _isa() -> str:
    return kernel_linear._module().isa() if kernel_linear.kernels_available() else ""


@pytest.mark.skipif(_isa() != "avx512bf16", reason="oneDNN's chunks: AVX512_BF16 builds")
def test_products_below_onednns_threshold_stay_torchs():
    """torch sends at most 16^3 multiply-adds to MKL, not oneDNN: those keep torch's linear (chunk 0)."""
    chunk = kernel_linear._module().bf16_torch_chunk
    assert chunk(1, 64, 64, False) == 0 and chunk(1, 16, 256, True) == 0
    assert chunk(1, 172, 64, False) > 0 and chunk(1, 64, 172, False) > 0


@pytest.mark.skipif(_isa() != "avx2", reason="torch's per-output dot products: AVX2 builds")
@pytest.mark.parametrize("m, n, k", [(1, 16, 16), (2, 5, 3), (1, 7, 9), (4, 8, 40), (3, 40, 77), (9, 576, 576),
                                     (33, 77, 130), (128, 1536, 576), (300, 192, 1000), (64, 960, 2560)])
@pytest.mark.parametrize("bias", [False, True])
def test_avx2_products_take_torchs_dot_order_at_any_row_count(m, n, k, bias):
    """Without AVX512_BF16, torch sums each bfloat16 output as one dot product (64 values per step into eight 8-lane
    sums, then 16 at a time, then one by one), whatever the shape: every shape takes the kernel (chunk -1), small and
    with every kind of tail, and prefill's row counts too (the kernels' rows limit does not apply), equal to torch on
    mirrored data, where torch's float32 product differs."""
    assert kernel_linear._module().bf16_torch_chunk(m, n, k, bias) == -1 and kernel_linear.any_rows(torch.bfloat16)
    x, w = _mirrored(m, n, k - k % 2, seed=n + k)
    if k % 2:
        x, w = torch.cat([x, x[:, :1]], 1), torch.cat([w, w[:, :1]], 1)
    b = _operands(1, n, 8, seed=n, bias=True)[2] if bias else None
    with torch.no_grad():
        got = kernel_linear.small_batch_linear(x, w, b)
        want = F.linear(x, w, b)
        unbiased, other = F.linear(x, w), F.linear(x.float(), w.float()).bfloat16()
    assert got is not None and torch.equal(got, want)
    if k >= 128:  # (shorter mirrored sums come out the same either way)
        assert (other != unbiased).double().mean().item() > 0.2


@needs_bf16
def test_probe_leaves_the_random_stream_alone():
    """Probing a shape for the first time draws from its own generator, not torch's."""
    state = torch.get_rng_state()
    x, w, _ = _operands(2, 123, 321, seed=9, bias=False)
    with torch.no_grad():
        kernel_linear.small_batch_linear(x, w, None)
    assert torch.equal(state, torch.get_rng_state())


def test_group_matches_single_products():
    """Q/K/V-like weights in one parallel pass equal each product alone (the same kernel, the same order)."""
    x = _operands(3, 8, 576, seed=1, bias=False)[0]
    weights = [_operands(1, n, 576, seed=n, bias=False)[1] for n in (576, 192, 192)]
    with torch.no_grad():
        outs = kernel_linear._module().gemv_group(x, weights, [None, None, None])
        for out, w in zip(outs, weights):
            assert torch.equal(out, F.linear(x, w))


def test_float32_inputs_keep_every_bit():
    """float32 inputs with bfloat16 weights are not rounded to bfloat16 (the widening path): the sums equal
    float64's within float32 rounding, far closer than rounding x to bfloat16 would leave them."""
    gen = torch.Generator().manual_seed(5)
    x, w = torch.randn(2, 300, generator=gen), torch.randn(64, 300, generator=gen).bfloat16()
    with torch.no_grad():
        got = kernel_linear._module().gemv(x, w, None)
    exact = x.double() @ w.double().t()
    magnitude = x.double().abs() @ w.double().abs().t()
    assert ((got.double() - exact).abs() <= 301 * U * magnitude).all()
    rounded = x.bfloat16().double() @ w.double().t()
    assert (rounded - exact).abs().max() > 100 * (got.double() - exact).abs().max()


@needs_bf16
def test_bfloat16_kernels_on_unless_turned_off(monkeypatch):
    """bfloat16 models use the kernels by default; FORMERS_BF16_KERNELS=0 turns them off."""
    x, w, _ = _operands(1, 32, 64, seed=2, bias=False)
    try:
        for setting, expected in ((None, True), ("1", True), ("0", False)):
            if setting is None:
                monkeypatch.delenv("FORMERS_BF16_KERNELS", raising=False)
            else:
                monkeypatch.setenv("FORMERS_BF16_KERNELS", setting)
            module = importlib.reload(kernel_linear)
            assert module.BFLOAT16 is expected and (torch.bfloat16 in module.kernel_dtypes()) is expected
            with torch.no_grad():
                assert (module.small_batch_linear(x, w, None) is not None) is expected
                assert module.small_batch_linear(x.float(), w.float(), None) is not None  # float32: always
    finally:
        monkeypatch.undo()
        importlib.reload(kernel_linear)
