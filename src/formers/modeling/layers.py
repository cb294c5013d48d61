"""nn.Linear and nn.Embedding as formers builds them.

Both skip random initialisation when built on the `meta` device (from_pretrained assigns the real
weights next; initialising meta tensors would also import torch's compiler stack, ~45 MB of RSS).

Linear's inference path on CPU float32 calls oneDNN directly for large weights: PyTorch's default
CPU float32 GEMM (MKL) reads a row-major [out, in] weight at about half the memory bandwidth oneDNN
reaches when the batch is small, and decoding is bandwidth-bound: one token per row means every
weight is streamed once per step. oneDNN's fixed cost per call (~20 us on this project's CPU) loses
below about 2^19 weight elements (measured: 64x64 5x slower, 512x512 even, 1536x576 1.6x faster),
so smaller weights keep F.linear. Decoding itself now goes to formers' GEMV kernels (up to 8 rows); beyond 64
rows (prefill) MKL's GEMM is as fast or faster (2-core Zen 3, in one process: 0.90-1.03x oneDNN's time at 128 rows,
0.78-0.94x at 1024) and gives 4.45.2's own bits, so those keep F.linear too, except weights of 2^24 elements or
more (an LM head over every position: oneDNN 1.33x faster at 128 rows, 1.07x at 1024). Same parameters, same
checkpoint keys; training (grad enabled) and other dtypes/devices keep F.linear.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels.linear import MAX_ROWS, any_rows, small_batch_linear

_onednn_linear = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
_USE_ONEDNN = _onednn_linear is not None and torch.backends.mkldnn.is_available()
ONEDNN_MIN_WEIGHT = 1 << 19  # weight elements from which oneDNN's bandwidth beats its per-call cost
ONEDNN_MAX_ROWS = 64  # input rows up to which oneDNN is called (beyond, MKL's GEMM is as fast), except for
ONEDNN_WIDE_WEIGHT = 1 << 24  # weights of this many elements or more, where oneDNN wins at any row count


class Linear(nn.Linear):
    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if torch.compiler.is_compiling():  # inductor: F.linear (and no guards on the traced sizes)
            return F.linear(x, weight, bias)
        if x.shape[-1] * MAX_ROWS >= x.numel() or any_rows(x.dtype):  # decoding a few rows: formers' GEMV kernels
            out = small_batch_linear(x, weight, bias)
            if out is not None:
                return out
        if weight.numel() >= ONEDNN_MIN_WEIGHT and _USE_ONEDNN and weight.dtype == torch.float32 \
                and x.dtype == torch.float32 and x.is_cpu and not torch.is_grad_enabled() \
                and (x.numel() <= ONEDNN_MAX_ROWS * x.shape[-1] or weight.numel() >= ONEDNN_WIDE_WEIGHT):
            return _onednn_linear(x, weight, bias, "none", [], "")
        return F.linear(x, weight, bias)


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        if not self.weight.is_meta:
            super().reset_parameters()
