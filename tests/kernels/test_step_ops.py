"""The per-step operations computed in C++ (formers/kernels/step_ops.py) equal torch's own results exactly: the
greedy argmax over a vocabulary-wide row (ties, NaN, infinities) and the rotary tables of a decode step (every
dtype, scaling, both layouts, head sizes that are and are not multiples of the vector width)."""
from __future__ import annotations

import pytest
import torch

from formers.kernels import linear as kernel_linear, step_ops
from formers.modeling import rope

pytestmark = pytest.mark.skipif(not kernel_linear.kernels_available(), reason="no C++ toolchain here")
VOCAB = 49157  # above the kernel's threshold, not a multiple of 16: the scalar tail runs too


def _scores(rows: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, VOCAB, generator=torch.Generator().manual_seed(seed))


def _argmax_cases() -> list[torch.Tensor]:
    cases = [_scores()]
    ties = _scores(seed=1)
    ties[0, [5, 900, VOCAB - 1]] = 100.0  # equal maxima: the first one
    ties[1, [VOCAB - 3, VOCAB - 2]] = 100.0  # in the tail
    ties[2, 17], ties[2, 40] = -0.0, 0.0  # zeros of both signs as the maximum
    ties[2].clamp_(max=0.0)
    ties[3] = float("-inf")  # nothing but -inf: index 0
    cases.append(ties)
    nans = _scores(seed=2)
    nans[0, [300, 20000]] = float("nan")  # the first NaN wins over everything
    nans[1, VOCAB - 1] = float("nan")  # a NaN in the tail
    nans[2, 7] = float("inf")
    nans[2, 9000] = float("nan")
    nans[3, 0] = float("nan")
    cases.append(nans)
    infs = _scores(seed=3)
    infs[:, [11, 12]] = float("inf")
    cases.append(infs)
    return cases


@pytest.mark.parametrize("case", range(4))
def test_argmax_equals_torch(case):
    scores = _argmax_cases()[case]
    got = kernel_linear._module().argmax_rows(scores)
    assert got.dtype == torch.long and torch.equal(got, torch.argmax(scores, dim=-1))
    assert torch.equal(step_ops.argmax_last(scores), torch.argmax(scores, dim=-1))


def test_argmax_of_a_non_contiguous_row_and_small_rows_fall_back():
    scores = _scores(rows=3).t().contiguous().t()  # a transposed copy: strided rows
    assert torch.equal(step_ops.argmax_last(scores), torch.argmax(scores, dim=-1))
    small = torch.randn(2, 100)
    assert torch.equal(step_ops.argmax_last(small), torch.argmax(small, dim=-1))


def _torch_tables(like, positions, inv_freq, scaling, interleaved):
    """rope.rotary_tables with the kernel switched off: torch's own ops."""
    saved = rope.kernel_rotary_tables
    rope.kernel_rotary_tables = lambda *args: None
    try:
        return rope.rotary_tables(like, positions, inv_freq, scaling, interleaved)
    finally:
        rope.kernel_rotary_tables = saved


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [40, 64, 80, 128])
def test_rotary_tables_equal_torch(dtype, head_dim):
    if not kernel_linear._module().rotary_available():
        pytest.skip("this torch build's cos/sin are not MKL's vsCos/vsSin: the module path keeps torch's ops")
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    like = torch.zeros(1, dtype=dtype)
    compared = 0
    for scaling in (1.0, 0.7071):
        for interleaved in (False, True):
            for positions in ([[0]], [[1]], [[127], [4099]], [[65535]], [[131071], [3], [1000003]]):
                ids = torch.tensor(positions)
                got = step_ops.rotary_tables(like, ids, inv_freq, scaling, interleaved)
                want = _torch_tables(like, ids, inv_freq, scaling, interleaved)
                assert got is not None
                for g, w in zip(got, want):
                    assert g.dtype == w.dtype and g.shape == w.shape and torch.equal(g, w)
                compared += 1
    assert compared == 20


def test_rotary_tables_leave_prefill_and_float_positions_to_torch():
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, 64, 2).float() / 64))
    like = torch.zeros(1)
    assert step_ops.rotary_tables(like, torch.arange(20)[None], inv_freq, 1.0, False) is None
    assert step_ops.rotary_tables(like, torch.tensor([[3.0]]), inv_freq, 1.0, False) is None
