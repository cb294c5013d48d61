"""QuantizedLinear: an nn.Linear whose weight stays int8, int4 or in llama.cpp's GGUF blocks and is multiplied
by CPU kernels that read it directly (no full-precision copy of the weight is ever kept).

- q8_0 / q4_0: `weight` uint8 [N, K / 32 * block bytes], the GGUF file's Q8_0 (34-byte) or Q4_0 (18-byte)
  blocks as stored, each with its own fp16 scale; multiplied by formers' kernel (kernels/quant.h), which
  quantizes the activations of a decode step to int8 blocks of 32 once per call, as llama.cpp does
  (`EXACT_GGUF_ACTIVATIONS`, or FORMERS_GGUF_EXACT=1, keeps them float32: slower, the dequantized model's
  numbers up to summation order). At the first inference call the blocks may be regrouped 16 rows at a time
  (quantization/interleave.py: the same bytes, the layout the kernel reads fastest); the state dict holds the
  row-major blocks unchanged all the same.

- int8: `weight` int8 [N, K] with one scale per output row, `weight_scale` [N];
  y = x @ (weight * scale).T via torch._weight_int8pack_mm.
- int4: values q in 0..15 for groups of G input columns, w = (q - 8) * scale + zero;
  `scales_and_zeros` [K / G, N, 2]. `weight` holds the kernel's own packed layout (uint8 [N, K / 2],
  from aten._convert_weight_to_int4pack_for_cpu) and is multiplied by aten._weight_int4pack_mm_for_cpu;
  the state dict stores plain nibbles instead (two per byte, low nibble first), so saved files do not
  depend on torch's private layout.

Scales are stored in the model's dtype (model.to(dtype) converts them). torch 2.13's CPU kernels are
vectorised for bfloat16 activations only: with float32 ones they fall back to scalar code, measured
30-100x slower than the float32 F.linear of the same shape (576x576: int8 1.0-1.5 ms, int4 2.1 ms,
F.linear 0.03 ms), while with bfloat16 ones they beat it on large weights. So float32 activations are
rounded to bfloat16 for the kernel and the result is returned in float32 (`FP32_KERNEL_DTYPE`; set it
to torch.float32 for the exact but slow path). Int8 products of at most 8 rows (decoding) take formers' own
GEMV instead (kernels/linear.py): float32 activations as they are, float32 accumulation, one pass over the
int8 weight; more float32 rows (prefill) widen the int8 weight to float32 once per call for torch's float32
GEMM and then scale each output (torchao's int8_weight_only order): exact activations, and a 128-token
prefill of a 135M model 1.25x faster than through the bfloat16 kernel on AVX2. Shape legend: N out_features,
K in_features, G group size.
"""
from __future__ import annotations

import os
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError
from ..gguf.dequant import BLOCK_LAYOUT, dequantize
from ..kernels.linear import (gguf_block_linear, interleaved_blocks_kernel, small_batch_dynamic_int8_linear,
                              small_batch_int8_linear)
from . import interleave

_INNER_K_TILES = 2  # the CPU kernel's tiling of K; a layout detail of the packed weight
FP32_KERNEL_DTYPE = torch.bfloat16  # what float32 activations are computed in on CPU (see the module doc)
GGUF_SCHEMES = {"q8_0": "Q8_0", "q4_0": "Q4_0"}  # scheme -> ggml type of the blocks it keeps
EXACT_GGUF_ACTIVATIONS = os.environ.get("FORMERS_GGUF_EXACT") == "1"


def pack_int4_for_cpu(q: Tensor) -> Tensor:
    """int values 0..15 [N, K] -> the CPU kernel's packed uint8 [N, K / 2]."""
    return torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.to(torch.int32).contiguous(), _INNER_K_TILES)


def nibbles_to_values(nibbles: Tensor) -> Tensor:
    """uint8 [N, K / 2] (low nibble = even column) -> int32 [N, K]."""
    n = nibbles.to(torch.int32)
    return torch.stack([n & 0xF, n >> 4], dim=-1).flatten(-2)


def values_to_nibbles(q: Tensor) -> Tensor:
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


class QuantizedLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, scheme: str, group_size: int | None = None,
                 bias: Tensor | None = None):
        super().__init__()
        if scheme not in ("int8", "int8_dynamic", "int4", *GGUF_SCHEMES):
            raise ValueError(f"QuantizedLinear scheme: expected 'int8', 'int8_dynamic', 'int4', 'q8_0' or 'q4_0', "
                             f"got {scheme!r}")
        self.in_features, self.out_features, self.scheme = in_features, out_features, scheme
        self.group_size = group_size
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    # --- construction -----------------------------------------------------------------------------
    @classmethod
    def int8(cls, q: Tensor, scale: Tensor, bias: Tensor | None = None,
             dynamic_activations: bool = False) -> "QuantizedLinear":
        """q: int8 [N, K]; scale: [N] (float). dynamic_activations: the inputs are quantized to int8 per token too
        (torchao's int8_dynamic_activation_int8_weight) and multiplied in integers."""
        module = cls(q.shape[1], q.shape[0], "int8_dynamic" if dynamic_activations else "int8", None, bias)
        module.register_buffer("weight", q.to(torch.int8).contiguous())
        module.register_buffer("weight_scale", scale.contiguous())
        return module

    @classmethod
    def int4(cls, q: Tensor, scale: Tensor, zero: Tensor, bias: Tensor | None = None) -> "QuantizedLinear":
        """q: values 0..15 [N, K]; scale, zero: [N, K / G] (float); w = (q - 8) * scale + zero."""
        out_features, in_features = q.shape
        group_size = in_features // scale.shape[1]
        module = cls(in_features, out_features, "int4", group_size, bias)
        if q.device.type != "cpu":
            raise CheckpointError("int4 weights run on torch's CPU kernel only; load the model with device_map='cpu'")
        module.register_buffer("weight", pack_int4_for_cpu(q))
        module.register_buffer("scales_and_zeros", torch.stack([scale.t(), zero.t()], dim=-1).contiguous())
        return module

    @classmethod
    def gguf_blocks(cls, blocks: Tensor, type_name: str, in_features: int,
                    bias: Tensor | None = None) -> "QuantizedLinear":
        """blocks: uint8 [N, K / 32 * block bytes] of ggml type `type_name` ("Q8_0" or "Q4_0"), kept as they are."""
        scheme = type_name.lower()
        type_size = BLOCK_LAYOUT.get(type_name, (0, 0))[1]
        if (scheme not in GGUF_SCHEMES or blocks.dtype != torch.uint8 or blocks.dim() != 2 or in_features % 32
                or blocks.shape[1] != in_features // 32 * type_size):
            raise CheckpointError(f"QuantizedLinear.gguf_blocks: expected uint8 [N, in_features / 32 * block bytes] "
                                  f"blocks of Q8_0 or Q4_0 for in_features={in_features}, got {type_name} "
                                  f"{blocks.dtype} {list(blocks.shape)}")
        module = cls(in_features, blocks.shape[0], scheme, 32, bias)
        module.register_buffer("weight", blocks.contiguous())
        return module

    # --- compute ------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if self.scheme in GGUF_SCHEMES:
            out = gguf_block_linear(x, self.weight, GGUF_SCHEMES[self.scheme], self.bias, EXACT_GGUF_ACTIVATIONS)
            if out is not None:
                return out
            return F.linear(x, self.dequantized_weight().to(device=x.device, dtype=x.dtype), self.bias)
        if self.scheme == "int8_dynamic":
            out = small_batch_dynamic_int8_linear(x, self.weight, self.weight_scale, self.bias)
            return self._dynamic_int8_linear(x) if out is None else out
        if self.scheme == "int8":  # decoding a few rows: formers' int8 GEMV (exact float32 activations)
            out = small_batch_int8_linear(x, self.weight, self.weight_scale, self.bias)
            if out is not None:
                return out
        if self.scheme == "int8" and x.dtype == torch.float32 and x.is_cpu:  # more rows (prefill), float32
            y = F.linear(x, self.weight.to(torch.float32)) * self.weight_scale.float()  # torchao's order
            return y + self.bias if self.bias is not None else y
        shape = x.shape
        compute = FP32_KERNEL_DTYPE if x.dtype == torch.float32 and x.is_cpu else x.dtype
        x2 = x.reshape(-1, shape[-1]).to(compute).contiguous()
        if self.scheme == "int8":
            scale = self.weight_scale.to(compute)
            if x.is_cpu:
                y = torch._weight_int8pack_mm(x2, self.weight, scale)
            else:
                y = F.linear(x2, self.weight.to(compute) * scale[:, None])
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(x2, self.weight, self.group_size,
                                                           self.scales_and_zeros.to(compute))
        y = y.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def _dynamic_int8_linear(self, x: Tensor) -> Tensor:
        """torchao's int8 x int8 product: each row of x quantized symmetrically to [-127, 127] with scale
        max |x| / 127 (at least 1e-5), the integer product summed exactly, then scaled by the row's and the
        output's scales, in that order."""
        shape = x.shape
        rows = x.reshape(-1, shape[-1])
        row_scale = (rows.abs().amax(dim=1, keepdim=True) / 127).clamp_min(1e-5)
        q = torch.clamp(torch.round(rows * (1.0 / row_scale)), -127, 127)
        products = self._integer_products(q)
        y = (products * row_scale * self.weight_scale.to(row_scale.dtype)).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def _integer_products(self, q: Tensor) -> Tensor:
        """q @ weight.T in int32 for integer-valued q [M, K] in [-127, 127]. Where 128 * sum |q| of every row is
        at most 2^24, every partial sum of any order is an integer float32 holds exactly, so float32 kernels give
        the exact sums (formers' int8 GEMV for a few rows, torch's float32 GEMM on the widened weight for more: both
        far faster than torch's int32 matmul, which has no CPU BLAS); otherwise the int32 matmul itself."""
        if q.is_cpu and q.numel() and float(q.abs().sum(dim=1, dtype=torch.float32).max()) * 128 <= 2 ** 24:
            q = q.float()
            products = small_batch_int8_linear(q, self.weight, None, None)
            if products is None:
                products = F.linear(q, self.weight.to(torch.float32))
            return products.to(torch.int32)
        return torch.matmul(q.to(torch.int32), self.weight.t().to(torch.int32))  # exact: |sum| < 2^31 for K < 2^17

    def int4_values(self) -> Tensor:
        """The stored values q (0..15) as int32 [N, K], read back through the kernel: x = identity rows,
        scale 1, zero 0 gives q - 8, exact in bfloat16 (the kernel's fast path); done in slices of the
        identity to bound memory."""
        ones = torch.zeros_like(self.scales_and_zeros, dtype=torch.bfloat16)
        ones[..., 0] = 1.0
        columns = []
        for start in range(0, self.in_features, 1024):
            stop = min(start + 1024, self.in_features)
            eye = torch.eye(self.in_features, dtype=torch.bfloat16)[start:stop]
            columns.append(torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.weight, self.group_size, ones))
        return (torch.cat(columns).t().float() + 8).round().to(torch.int32)

    def dequantized_weight(self) -> Tensor:
        """The float weight this module multiplies by (for checks and for non-CPU fallbacks)."""
        if self.scheme in GGUF_SCHEMES:
            return dequantize(self.gguf_blocks_row_major().cpu(), GGUF_SCHEMES[self.scheme],
                              (self.out_features, self.in_features))
        if self.scheme in ("int8", "int8_dynamic"):
            return self.weight.float() * self.weight_scale.float()[:, None]
        q = self.int4_values().float().view(self.out_features, -1, self.group_size)
        scale, zero = self.scales_and_zeros.float().unbind(-1)  # [K / G, N] each
        return ((q - 8) * scale.t()[..., None] + zero.t()[..., None]).view(self.out_features, self.in_features)

    # --- GGUF blocks: row-major as stored, or regrouped for decoding ---------------------------------
    def _block_bytes(self) -> int:
        return BLOCK_LAYOUT[GGUF_SCHEMES[self.scheme]][1]

    def gguf_blocks_row_major(self) -> Tensor:
        """The GGUF blocks as the file stores them, uint8 [N, K / 32 * block bytes], whichever layout is live."""
        return interleave.row_major(self.weight, self.out_features, self._block_bytes())

    def decoding_layout(self) -> Callable[[Tensor], Tensor] | None:
        """How kernels/decode.py pack_for_decoding regroups this module's GGUF blocks for decoding (16 rows at a
        time, quantization/interleave.py), or None where they stay as they are: not GGUF blocks, already
        regrouped, a row count that is not a multiple of 16, or no kernel for that layout in this build."""
        if (self.scheme not in GGUF_SCHEMES or self.out_features % interleave.GROUP_ROWS
                or interleave.is_interleaved(self.weight, self.out_features) or not interleaved_blocks_kernel()):
            return None
        return partial(interleave.interleave, block_bytes=self._block_bytes())

    # --- state dict: portable layouts instead of the kernels' ------------------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """keep_vars=True callers (from_pretrained's bookkeeping) get the live tensors; a detached state dict
        (save_pretrained, copies) gets int4 weights as portable nibbles and GGUF blocks row-major."""
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if keep_vars:
            return
        if self.scheme == "int4":
            destination[prefix + "weight"] = values_to_nibbles(self.int4_values())
        elif self.scheme in GGUF_SCHEMES:
            destination[prefix + "weight"] = self.gguf_blocks_row_major()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Row-major GGUF blocks loaded into a module whose blocks were regrouped are regrouped the same way."""
        key = prefix + "weight"
        incoming = state_dict.get(key)
        if (self.scheme in GGUF_SCHEMES and isinstance(incoming, Tensor) and interleave.is_interleaved(self.weight, self.out_features)
                and incoming.shape == (self.out_features, self.weight.shape[1] // interleave.GROUP_ROWS)):
            state_dict = {**state_dict, key: interleave.interleave(incoming, self._block_bytes())}
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.scheme == "int4" else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, scheme={self.scheme}{group}, "
                f"bias={self.bias is not None}")
