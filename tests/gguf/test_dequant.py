"""formers' vectorised dequantizers against the `gguf` package's reference, on random blocks of every type."""
from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from formers.gguf.dequant import BLOCK_LAYOUT, INT4_TYPES, dequantize, int4_parts

from .convert import random_blocks

QUANTIZED = [name for name, (block, _) in BLOCK_LAYOUT.items() if block > 1]


@pytest.mark.parametrize("qtype", QUANTIZED)
def test_block_types_equal_reference(qtype):
    raw = random_blocks(8, 1024, qtype, np.random.default_rng(1))
    reference = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[qtype])
    ours = dequantize(torch.from_numpy(raw), qtype, (8, 1024)).numpy()
    assert ours.dtype == np.float32 and ours.shape == reference.shape == (8, 1024)
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("qtype", ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_quantized_by_the_package_equal_reference(qtype):
    values = np.random.default_rng(2).standard_normal((4, 512)).astype(np.float32)
    kind = gguf.GGMLQuantizationType[qtype]
    stored = gguf.quants.quantize(values, kind)
    reference = gguf.quants.dequantize(stored, kind)
    raw = torch.from_numpy(np.ascontiguousarray(stored).view(np.uint8).reshape(4, -1))
    np.testing.assert_array_equal(dequantize(raw, qtype, (4, 512)).numpy(), reference)


def test_large_tensor_decoded_in_chunks():
    """More blocks than one decoding step holds (40960 Q4_0 blocks): the chunked path equals the reference."""
    raw = random_blocks(40, 32768, "Q4_0", np.random.default_rng(5))
    reference = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q4_0)
    np.testing.assert_array_equal(dequantize(torch.from_numpy(raw), "Q4_0", (40, 32768)).numpy(), reference)


def test_f32_is_reinterpreted():
    values = np.random.default_rng(3).standard_normal((3, 5)).astype(np.float32)
    out = dequantize(torch.from_numpy(values.view(np.uint8).reshape(3, -1)), "F32", (3, 5))
    np.testing.assert_array_equal(out.numpy(), values)


@pytest.mark.parametrize("qtype", INT4_TYPES)
def test_int4_parts_rebuild_the_weight(qtype):
    """(q - 8) * scale + zero, the form the int4 kernel uses, equals the dequantized weight."""
    raw = torch.from_numpy(random_blocks(16, 512, qtype, np.random.default_rng(4)))
    q, scale, zero = int4_parts(raw, qtype, (16, 512))
    assert int(q.min()) >= 0 and int(q.max()) <= 15
    rebuilt = ((q.float() - 8).view(16, -1, 32) * scale[..., None] + zero[..., None]).view(16, 512)
    expected = dequantize(raw, qtype, (16, 512))
    if qtype == "Q4_0":
        assert torch.equal(rebuilt, expected)
    else:  # the zero folds the min and 8 * scale into one float32 sum
        torch.testing.assert_close(rebuilt, expected, rtol=0, atol=1e-6 * float(expected.abs().max()))
