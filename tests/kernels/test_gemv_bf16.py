"""The bfloat16 GEMV (gemv.h `run_bf16`: bfloat16 weights times bfloat16 inputs, AVX512_BF16 dot products where
the CPU has them, else the widening path) against a float64 reference and torch's F.linear, and the switch
that makes bfloat16 models use it by default."""
from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from formers.kernels import linear as kernel_linear

pytestmark = pytest.mark.skipif(not kernel_linear.kernels_available(), reason="no C++ toolchain here")
# (M, N, K): every row count, K a multiple of 32, of 128, and not (a masked tail of 1 to 31), the model's shapes
SHAPES = [(1, 64, 64), (1, 49, 37), (2, 33, 100), (3, 200, 576), (4, 9, 31), (5, 576, 1536), (6, 11, 129),
          (7, 13, 33), (8, 1536, 576), (8, 7, 16), (1, 576, 1536), (2, 1000, 1000)]
U = 2.0 ** -24  # float32 unit roundoff



@pytest.fixture(autouse=True)
def bfloat16_kernels_on(monkeypatch):
    """The bfloat16 kernels are opt-in (FORMERS_BF16_KERNELS=1); these tests check them switched on."""
    monkeypatch.setattr(kernel_linear, "BFLOAT16", True)

def _operands(m: int, n: int, k: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen).bfloat16()
    w = torch.randn(n, k, generator=gen).bfloat16()
    b = torch.randn(n, generator=gen).bfloat16()
    return x, w, b


def _torch_tolerance(got: torch.Tensor, want: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """How far an output may be from torch's: one bfloat16 step, or where the sum nearly cancels (|y| << sum
    |x w|) the two float32 sums' own rounding bounds, which there exceed a step of the small result."""
    k = x.shape[-1]
    gamma = (k + 1) * U / (1 - (k + 1) * U)
    magnitude = x.double().abs() @ w.double().abs().t()
    return _bf16_step(torch.maximum(got.double().abs(), want.double().abs())) + 2 * gamma * magnitude


def _bf16_step(v: torch.Tensor) -> torch.Tensor:
    """The spacing of bfloat16 values at |v| (8 significant bits): 2^(e - 8) for v = f * 2^e, 0.5 <= |f| < 1."""
    _, exponent = torch.frexp(v.float())
    return torch.ldexp(torch.ones_like(v, dtype=torch.float64), exponent.to(torch.float64) - 8)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_float32_sums_within_accumulation_bound(m, n, k, bias):
    """Products of bfloat16 values are exact in float32, so the float32 sums may differ from the float64 ones
    only by the rounding of at most k + 1 additions: |error| <= gamma_(k+1) * (sum |x w| + |b|)."""
    x, w, b = _operands(m, n, k, seed=m * n + k)
    b = b if bias else None
    with torch.no_grad():
        sums = kernel_linear._module().gemv_sums(x, w, b)
    exact = x.double() @ w.double().t() + (b.double() if bias else 0)
    magnitude = x.double().abs() @ w.double().abs().t() + (b.double().abs() if bias else 0)
    gamma = (k + 1) * U / (1 - (k + 1) * U)
    assert sums.dtype == torch.float32 and sums.shape == (m, n)
    assert ((sums.double() - exact).abs() <= gamma * magnitude).all()


@pytest.mark.parametrize("m, n, k", SHAPES)
def test_within_one_bfloat16_step_of_torch(m, n, k):
    """Rounded once from the float32 sum: each output within one bfloat16 step of torch's F.linear (which rounds
    its own float32 sum; near-cancelling sums excepted, see _torch_tolerance), and only a small fraction of
    outputs differs at all."""
    x, w, _ = _operands(m, n, k, seed=n + k)
    with torch.no_grad():
        got = kernel_linear.small_batch_linear(x, w, None)
        want = F.linear(x, w)
    assert got is not None and got.dtype == torch.bfloat16 and got.shape == want.shape
    assert ((got.double() - want.double()).abs() <= _torch_tolerance(got, want, x, w)).all()
    # measured on the AMD EPYC (Zen 4) kind: 0 to 0.07% of outputs differ per shape here
    assert (got != want).double().mean().item() <= 0.005


def test_many_outputs_rarely_differ_from_torch():
    """Over an LM-head-sized product (49152 x 576, 8 rows): the fraction of outputs off torch's (measured on the
    AMD EPYC kind: 0.014%, 54 of 393216, of which 5 near-cancelling sums more than one step off)."""
    x, w, _ = _operands(8, 49152, 576, seed=7)
    with torch.no_grad():
        got = kernel_linear.small_batch_linear(x, w, None)
        want = F.linear(x, w)
    assert ((got.double() - want.double()).abs() <= _torch_tolerance(got, want, x, w)).all()
    assert (got != want).double().mean().item() <= 0.002


def test_group_matches_single_products():
    """Q/K/V-like weights in one parallel pass equal each product alone (the same kernel, the same order)."""
    x = _operands(3, 8, 576, seed=1)[0]
    weights = [_operands(1, n, 576, seed=n)[1] for n in (576, 192, 192)]
    with torch.no_grad():
        outs = kernel_linear._module().gemv_group(x, weights, [None, None, None])
        for out, w in zip(outs, weights):
            assert torch.equal(out, kernel_linear.small_batch_linear(x, w, None))


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


def test_bfloat16_kernels_only_when_asked(monkeypatch):
    """bfloat16 models use the kernels with FORMERS_BF16_KERNELS=1 only (their rounding can flip near-ties)."""
    x, w, _ = _operands(1, 32, 64, seed=2)
    try:
        for setting, expected in ((None, False), ("1", True), ("0", False)):
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
