"""formers' C++ GEMV kernels (formers/kernels) against torch.matmul, their dispatch from Linear, and the
quiet fallback when no compiler exists."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from formers.kernels import build, linear as kernel_linear
from formers.modeling.layers import Linear

pytestmark = pytest.mark.skipif(not kernel_linear.kernels_available(), reason="no C++ toolchain here")
SHAPES = [(1, 64, 64), (1, 49, 37), (3, 200, 576), (8, 1536, 576), (2, 17, 1000), (5, 576, 1536), (8, 7, 16)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_float32_matches_matmul(m, n, k, bias):
    torch.manual_seed(m * n + k)
    x, w = torch.randn(m, k), torch.randn(n, k)
    b = torch.randn(n) if bias else None
    expected = torch.matmul(x, w.t()) + (b if bias else 0)
    with torch.no_grad():
        got = kernel_linear.small_batch_linear(x, w, b)
    assert got.shape == (m, n) and got.dtype == torch.float32
    assert _rel(got, expected) <= 1e-5


@pytest.mark.parametrize("m, n, k", SHAPES)
def test_bfloat16_weights_accumulate_in_float32(m, n, k, monkeypatch):
    monkeypatch.setattr(kernel_linear, "BFLOAT16", True)
    torch.manual_seed(n + k)
    x, w = torch.randn(m, k).bfloat16(), torch.randn(n, k).bfloat16()
    exact = torch.matmul(x.double(), w.double().t())
    with torch.no_grad():
        got = kernel_linear.small_batch_linear(x, w, None)
    assert got.dtype == torch.bfloat16
    # products of bfloat16 values are exact in float32, so the float32 sum is off by at most gamma_k * sum |x w|,
    # and one rounding to bfloat16 adds at most half a bfloat16 ulp (2^-8 relative)
    gamma = k * 2 ** -24 / (1 - k * 2 ** -24)
    bound = gamma * torch.matmul(x.double().abs(), w.double().abs().t())
    assert ((got.double() - exact).abs() <= (exact.abs() + bound) * 2 ** -8 + bound).all()
    assert _rel(got.float(), torch.matmul(x.float(), w.float().t()).bfloat16().float()) <= 1e-2


def test_leading_dimensions_and_group():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 96)
    mods = [Linear(96, n, bias=n == 40) for n in (64, 40, 40)]
    with torch.no_grad():
        outs = kernel_linear.linear_group(x, mods)
        for out, mod in zip(outs, mods):
            expected = torch.matmul(x, mod.weight.t()) + (mod.bias if mod.bias is not None else 0)
            assert out.shape == (2, 3, mod.out_features) and out.is_contiguous()
            assert _rel(out, expected) <= 1e-5


def test_linear_uses_kernel_only_where_it_applies(monkeypatch):
    calls = []
    real = kernel_linear._module()
    monkeypatch.setattr(kernel_linear, "_kernels", type("Spy", (), {
        "gemv": staticmethod(lambda *a: calls.append(a[0].shape) or real.gemv(*a))}))
    lin = Linear(32, 16)
    x1, x9 = torch.randn(1, 1, 32), torch.randn(9, 32)
    with torch.no_grad():
        assert _rel(lin(x1), F.linear(x1, lin.weight, lin.bias)) <= 1e-5
        lin(x9)  # 9 rows: torch's GEMM
        lin.double()(x1.double())  # other dtypes: torch
        lin.float()
    lin(x1)  # autograd on: torch
    assert calls == [(1, 1, 32)]


def test_hooked_module_is_not_bypassed():
    mods = [Linear(8, 8), Linear(8, 8)]
    seen = []
    mods[1].register_forward_hook(lambda *args: seen.append(1))
    with torch.no_grad():
        kernel_linear.linear_group(torch.randn(1, 8), mods)
    assert seen == [1]


def test_no_compiler_falls_back_quietly(monkeypatch):
    monkeypatch.setattr(build, "_state", {})
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert build.load() is None
    assert caught == []
    monkeypatch.setattr(kernel_linear, "_kernels", False)
    lin = Linear(16, 4)
    with torch.no_grad():
        x = torch.randn(1, 16)
        assert kernel_linear.small_batch_linear(x, lin.weight, None) is None
        assert torch.equal(lin(x), F.linear(x, lin.weight, lin.bias))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_int8_weights_with_row_scales(m, n, k, dtype):
    torch.manual_seed(k)
    q = torch.randint(-128, 128, (n, k), dtype=torch.int8)
    scale, bias = torch.rand(n) * 0.01 + 1e-3, torch.randn(n)
    x = torch.randn(m, k).to(dtype)
    with torch.no_grad():
        got = kernel_linear.small_batch_int8_linear(x, q, scale.to(dtype), bias.to(dtype))
    expected = torch.matmul(x.double(), (q.double() * scale.to(dtype).double()[:, None]).t()) + bias.to(dtype).double()
    assert got.dtype == dtype and got.shape == (m, n)
    assert _rel(got, expected) <= (1e-5 if dtype == torch.float32 else 2 ** -8)


def test_quantized_linear_int8_decodes_through_kernel():
    from formers.quantization import QuantizedLinear
    from formers.quantization.apply import quantize_int8

    torch.manual_seed(0)
    weight = torch.randn(48, 64)
    layer = QuantizedLinear.int8(*quantize_int8(weight))
    x = torch.randn(1, 2, 64)
    with torch.no_grad():
        got = layer(x)
    assert _rel(got, torch.matmul(x, layer.dequantized_weight().t())) <= 1e-5


@pytest.mark.parametrize("threads", [2, 3, 5])
def test_pool_with_more_threads_than_cores_and_many_jobs(threads):
    """The pool (pool.h): every chunk claimed exactly once whatever the thread count and however threads are
    descheduled (more threads than this machine's cores), over many back-to-back jobs of several sizes. Products
    take the pool inside fused decode steps (`gemv_on_pool` is one such product on its own) and torch's OpenMP
    threads elsewhere (`small_batch_linear`): both ways."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _pool_jobs(threads)
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def _pool_jobs(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for rows, n in ((1, 4099), (3, 1037), (8, 16 * 97)):
        w = torch.randn(n, 300, generator=gen)
        x = torch.randn(rows, 300, generator=gen)
        want = torch.nn.functional.linear(x, w)
        for i in range(80):  # alternating signs: a chunk left unwritten would hold the last job's values
            sign = 1.0 if i % 2 == 0 else -1.0
            product = kernel_linear._module().gemv_on_pool if i % 4 < 2 else kernel_linear.small_batch_linear
            got = product(x * sign, w, None)
            assert got is not None and (got - want * sign).abs().max().item() <= 1e-4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_float_logits_equal_float_cast(dtype):
    """float_logits (the logits cast on the calling thread) gives exactly .float(), also for a slice, and keeps
    autograd's cast where gradients are on."""
    logits = (torch.randn(2, 3, 40000) * 30).to(dtype)
    logits[0, 0, :3] = torch.tensor([float("inf"), float("-inf"), float("nan")])
    with torch.inference_mode():
        for view in (logits, logits[:, -1:, :], logits[:, :, 5:]):
            got = kernel_linear.float_logits(view)
            assert got.dtype == torch.float32 and got.shape == view.shape
            assert torch.equal(got.nan_to_num(), view.float().nan_to_num()) and got.isnan().sum() == view.isnan().sum()
    leaf = logits[:1, :1].clone().requires_grad_()
    out = kernel_linear.float_logits(leaf * 1)
    assert out.requires_grad and out.dtype == torch.float32


@pytest.mark.skipif(not kernel_linear.kernels_available(), reason="no C++ toolchain here")
def test_a_lock_left_by_a_killed_process_does_not_hang_the_next(tmp_path):
    """A process SIGKILLed while cpp_extension held its `lock` file in the build folder (seen: a rank killed by
    the DDP failure test during its first load) left it there, and every later process waited on it forever. A
    fresh process now loads the built library directly, and a builder under formers' own flock clears the
    stale file."""
    import subprocess
    import sys

    folder = next(p for p in build.cache_dir().iterdir() if p.name == kernel_linear._module().__name__)
    (folder / "lock").touch()
    code = "from formers.kernels import build; m = build.load(); assert m is not None; print(m.isa())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (folder / "lock").exists()
