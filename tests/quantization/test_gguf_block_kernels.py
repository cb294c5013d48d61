"""kernels/quant.h: x @ W^T for W kept in GGUF Q8_0 / Q4_0 blocks, against the `gguf` package's dequantizer.

Three paths, three references:
- decode rows (M <= 8), activations quantized to int8 blocks of 32 (the default, as llama.cpp): equal, to
  float32 summation order, to the exact product of the dequantized weight with the activations quantized the
  way the kernel states (scale max|x| / 127 per 32 values, round half to even), computed here in float64;
- decode rows with exact (float32) activations: F.linear with the dequantized weight, to summation order;
- prefill (M > 8): float32 row chunks and torch's matmul, to summation order.
Shapes are odd on purpose: K a multiple of 32 (the block), N not a multiple of the kernels' row groups.
"""
from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from formers.kernels import linear as kernel_linear
from formers.quantization import QuantizedLinear, interleave
from formers.quantization import linear as quantized_linear
from tests.gguf.convert import random_blocks

pytestmark = pytest.mark.skipif(not kernel_linear.kernels_available(), reason="no C++ toolchain here")
TYPES = ["Q8_0", "Q4_0"]
SHAPES = [(1, 1, 32), (1, 17, 64), (1, 19, 576), (1, 5, 1536), (2, 33, 96), (3, 100, 576), (4, 7, 32), (5, 45, 160),
          (6, 3, 64), (7, 61, 128), (8, 250, 576)]  # one row: 8 blocks at a time, then the rest (576 = 18 blocks)


def weight(n: int, k: int, qtype: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(blocks uint8 [n, k / 32 * block bytes], their float32 values from the gguf package's dequantizer).
    Every byte is random (Q8_0 includes -128, which llama.cpp's quantizer never writes)."""
    raw = random_blocks(n, k, qtype, np.random.default_rng(seed))
    values = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype]).reshape(n, k)
    return torch.from_numpy(raw.copy()), torch.from_numpy(values.astype(np.float32))


def quantized_input_reference(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x quantized per 32 values as the kernel does it, times w, in float64."""
    blocks = x.reshape(x.shape[0], -1, 32)
    d = blocks.abs().amax(-1, keepdim=True) / 127
    inverse = torch.where(d != 0, 1 / d, torch.zeros_like(d))
    q = torch.round(blocks * inverse)  # half to even, like the kernel's conversion
    return (q.double() * d.double()).reshape(x.shape) @ w.double().t()


def run(x, blocks, qtype, bias=None, exact=False):
    with torch.no_grad():
        return kernel_linear.gguf_block_linear(x, blocks, qtype, bias, exact)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_decode_rows_with_quantized_activations(qtype, m, n, k):
    blocks, w = weight(n, k, qtype, seed=m * n + k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(k))
    bias = torch.randn(n)
    got = run(x, blocks, qtype, bias)
    assert got.shape == (m, n) and got.dtype == torch.float32
    assert _rel(got, quantized_input_reference(x, w) + bias.double()) <= 2e-6
    # and against float32 activations: the activation rounding costs a fraction of a percent
    assert _rel(got, F.linear(x, w, bias)) <= 0.02


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_decode_rows_with_exact_activations(qtype, m, n, k):
    blocks, w = weight(n, k, qtype, seed=m + n * k)
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(n))
    assert _rel(run(x, blocks, qtype, exact=True), F.linear(x, w)) <= 1e-5


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("m", [9, 40])
def test_prefill_rows_match_dequantized_matmul(qtype, m):
    blocks, w = weight(1000, 576, qtype, seed=m)  # several row chunks of the dequantized weight
    x = torch.randn(2, m // 2 + 1, 576)
    bias = torch.randn(1000)
    got = run(x, blocks, qtype, bias)
    assert got.shape == (2, m // 2 + 1, 1000)
    assert _rel(got, F.linear(x, w, bias)) <= 1e-5


@pytest.mark.parametrize("qtype", TYPES)
def test_threads_and_bfloat16_activations(qtype):
    blocks, w = weight(4099, 256, qtype, seed=7)  # > 64 KiB: split over the pool's threads
    x = torch.randn(3, 256)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = run(x, blocks, qtype)
        torch.set_num_threads(1)
        one = run(x, blocks, qtype)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)  # every output row is computed by one thread in a fixed order
    low = run(x.bfloat16(), blocks, qtype)
    assert low.dtype == torch.bfloat16
    assert _rel(low.float(), quantized_input_reference(x.bfloat16().float(), w)) <= 1e-2


@pytest.mark.parametrize("qtype", TYPES)
def test_module_paths_agree(qtype, monkeypatch):
    """QuantizedLinear: the kernel (both activation modes) and the torch fallback (autograd) compute the same
    product; the state dict holds the blocks byte for byte."""
    blocks, w = weight(70, 96, qtype, seed=3)
    module = QuantizedLinear.gguf_blocks(blocks, qtype, 96, bias=torch.randn(70))
    assert torch.equal(module.dequantized_weight(), w)
    assert torch.equal(module.state_dict()["weight"], blocks)
    x = torch.randn(2, 1, 96)
    expected = F.linear(x, w, module.bias)
    with torch.enable_grad():
        fallback = module(x.requires_grad_())  # autograd: the dequantized weight through F.linear
    assert fallback.requires_grad and _rel(fallback.detach(), expected) <= 1e-6
    with torch.no_grad():
        assert _rel(module(x), expected) <= 0.02
        monkeypatch.setattr(quantized_linear, "EXACT_GGUF_ACTIVATIONS", True)
        assert _rel(module(x), expected) <= 1e-5


def test_bad_blocks_are_refused():
    blocks, _ = weight(4, 64, "Q4_0", seed=0)
    with pytest.raises(Exception, match="in_features"):
        QuantizedLinear.gguf_blocks(blocks, "Q8_0", 64)  # Q4_0 rows are too narrow for Q8_0
    with pytest.raises(RuntimeError, match="multiple of 32"):
        run(torch.randn(1, 48), blocks, "Q4_0")


# --- blocks regrouped 16 rows at a time (quantization/interleave.py), the layout decoding reads fastest --------
GROUPED_SHAPES = [(1, 16, 32), (1, 48, 576), (2, 32, 1536), (3, 64, 96), (5, 160, 576), (8, 16, 64), (8, 272, 576)]


@pytest.mark.parametrize("qtype", TYPES)
def test_regrouped_layout_holds_the_same_bytes(qtype):
    blocks, _ = weight(48, 96, qtype, seed=11)
    size = {"Q8_0": 34, "Q4_0": 18}[qtype]
    packed = interleave.interleave(blocks, size)
    assert packed.shape == (3, 16 * blocks.shape[1]) and interleave.is_interleaved(packed, 48)
    assert not interleave.is_interleaved(blocks, 48)
    assert torch.equal(interleave.deinterleave(packed, size), blocks)
    # group 1, block column 2: the 16 rows' scales, then each row's quantized bytes four at a time
    column = packed[1].view(3, 16 * size)[2]
    assert torch.equal(column[:32].view(16, 2), blocks[16:32, 2 * size:2 * size + 2])
    for piece in range((size - 2) // 4):
        for row in (0, 5, 15):
            at = 32 + (piece * 16 + row) * 4
            start = 2 * size + 2 + 4 * piece
            assert torch.equal(column[at:at + 4], blocks[16 + row, start:start + 4])
    index = torch.tensor([47, 0, 16, 16, 31])
    assert torch.equal(interleave.rows(packed, index, 48, size), blocks[index])
    assert torch.equal(interleave.rows(blocks, index, 48, size), blocks[index])


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("m,n,k", GROUPED_SHAPES)
def test_regrouped_blocks_compute_the_same_products(qtype, m, n, k):
    """The kernel on regrouped blocks: the same reference and bounds as on the file's layout, in every path."""
    blocks, w = weight(n, k, qtype, seed=m + 3 * n + k)
    packed = interleave.interleave(blocks, {"Q8_0": 34, "Q4_0": 18}[qtype])
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(m * k))
    bias = torch.randn(n)
    got = run(x, packed, qtype, bias)
    assert got.shape == (m, n)
    assert _rel(got, quantized_input_reference(x, w) + bias.double()) <= 2e-6
    assert _rel(got, run(x, blocks, qtype, bias)) <= 2e-6
    assert _rel(run(x, packed, qtype, bias, exact=True), F.linear(x, w, bias)) <= 1e-5
    # prefill (more than 8 rows): the same int8 products, 8 input rows at a time; exact: the file layout's path
    prefill = torch.randn(2, 13, k)
    expected = quantized_input_reference(prefill.reshape(26, k), w) + bias.double()
    assert _rel(run(prefill, packed, qtype, bias).reshape(26, n), expected) <= 2e-6
    assert torch.equal(run(prefill, packed, qtype, bias, exact=True), run(prefill, blocks, qtype, bias, exact=True))


@pytest.mark.parametrize("qtype", TYPES)
def test_picked_rows_equal_the_reference_dequantizer(qtype):
    """The embedding lookup kernel gives the gguf package's values of the chosen rows, bit for bit, from either
    layout; an index past the table raises IndexError naming it."""
    blocks, values = weight(48, 96, qtype, seed=13)
    packed = interleave.interleave(blocks, {"Q8_0": 34, "Q4_0": 18}[qtype])
    index = torch.tensor([47, 0, 16, 16, 31, 5])
    for layout in (blocks, packed):
        got = kernel_linear.picked_rows(layout, index, qtype, 96)
        assert got is not None and got.dtype == torch.float32 and torch.equal(got, values[index])
        with pytest.raises(IndexError, match="48"):
            kernel_linear.picked_rows(layout, torch.tensor([3, 48]), qtype, 96)
