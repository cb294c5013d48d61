"""Dispatch of small-batch linears (decoding: 1 to 8 rows) to formers' C++ GEMV kernels on CPU.

torch's CPU GEMMs read a weight at well below memory bandwidth when the batch is a few rows (oneDNN
and MKL tile for large M; bfloat16 weights go through 8-30 GB/s paths), while one decode step is
nothing but streaming every weight once. The kernels in gemv.h read each weight once at close to
STREAM speed, accumulating in float32. They apply to inference (no autograd), CPU tensors, float32
or bfloat16 activations with weights of the same dtype, and at most `MAX_ROWS` rows; everything else
returns None here and the caller uses F.linear. float32 products match torch.matmul to float32 rounding
(a different summation order); bfloat16 ones equal torch's bit for bit (see BFLOAT16 below).
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import build

MAX_ROWS = 8
_DTYPES = (torch.float32, torch.bfloat16)
# bfloat16 products go through kernels/bf16_match.h, which sums in torch's own order (found per shape by probing
# torch on this machine) and calls torch's linear for a shape no order reproduces, so outputs equal torch's bit
# for bit; the fused bfloat16 layer does the same for its attention, norms and SiLU (attention_bf16.h,
# torch_steps.h). Any other order moves a few outputs one bfloat16 step and greedy runs part from 4.45.2's at
# near-ties. On by default where the build has AVX512_BF16 (its dot-product instruction is what torch sums with
# there) or is the AVX2 build (torch's own per-output dot products there); FORMERS_BF16_KERNELS=0 turns it off.
BFLOAT16 = os.environ.get("FORMERS_BF16_KERNELS", "1") != "0"
_kernels = None  # the loaded module once the first eligible call built it; False when it cannot be built


def _module():
    global _kernels
    if _kernels is None:
        _kernels = build.load() or False
    return _kernels


def kernels_available() -> bool:
    """Whether the C++ kernels are (or can be) built and loaded on this machine."""
    return bool(_module())


_orders: tuple[bool, bool] | None = None  # the build's bf16_orders(), once asked


def _bf16_orders() -> tuple[bool, bool]:
    global _orders
    if _orders is None:
        kernels = _module()
        _orders = tuple(kernels.bf16_orders()) if kernels else (False, False)
    return _orders


def torch_order_bfloat16() -> bool:
    """Whether this build sums bfloat16 products in torch's order (AVX512_BF16 or AVX2; kernels/bf16_match.h)."""
    return _bf16_orders()[0]


def kernel_dtypes() -> tuple[torch.dtype, ...]:
    """The activation dtypes the float kernels take."""
    return _DTYPES if BFLOAT16 and torch_order_bfloat16() else (torch.float32,)


def any_rows(dtype: torch.dtype) -> bool:
    """Whether the kernels take `dtype` activations at any row count: bfloat16 where torch's own order is one dot
    product per output (AVX2 builds), whose bfloat16 matmul there runs at about 1 GFLOP/s, so prefill gains too."""
    return dtype == torch.bfloat16 and BFLOAT16 and _bf16_orders()[1]


def _eligible(x: Tensor, weight: Tensor) -> bool:
    if torch.compiler.is_compiling():  # first: a traced graph must not guard on the symbolic sizes below
        return False
    return (x.dtype in kernel_dtypes() and weight.dtype == x.dtype and x.is_cpu and weight.is_cpu
            and (x.numel() <= MAX_ROWS * x.shape[-1] or any_rows(x.dtype)) and x.numel() > 0
            and weight.is_contiguous() and not torch.is_grad_enabled())


def small_batch_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor | None:
    """F.linear(x, weight, bias) through the GEMV kernel, or None where it does not apply."""
    if not _eligible(x, weight):
        return None
    kernels = _module()
    if not kernels:
        return None
    return kernels.gemv(x.contiguous(), weight, bias)


def small_batch_int8_linear(x: Tensor, weight: Tensor, scale: Tensor | None, bias: Tensor | None) -> Tensor | None:
    """x @ (weight * scale[:, None]).T (+ bias) for int8 weights [N, K] with a scale per row (None: x @ weight.T),
    through the int8 GEMV kernel (float32 accumulation, activations not rounded), or None where it does not apply."""
    if torch.compiler.is_compiling():
        return None
    if not (x.dtype in _DTYPES and x.is_cpu and weight.dtype == torch.int8 and weight.is_contiguous()
            and 0 < x.numel() <= MAX_ROWS * x.shape[-1] and not torch.is_grad_enabled()):
        return None
    kernels = _module()
    return kernels.gemv_int8(x.contiguous(), weight, scale, bias) if kernels else None


def small_batch_dynamic_int8_linear(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor | None:
    """torchao's int8_dynamic_activation_int8_weight product (QuantizedLinear._dynamic_int8_linear, the same numbers)
    for up to MAX_ROWS float32 rows through the kernel that the fused decode step uses, or None where it does not
    apply."""
    if torch.compiler.is_compiling():
        return None
    if not (x.dtype == torch.float32 and x.is_cpu and weight.dtype == torch.int8 and weight.is_contiguous()
            and 0 < x.numel() <= MAX_ROWS * x.shape[-1] and not torch.is_grad_enabled()):
        return None
    kernels = _module()
    return kernels.gemv_int8_dynamic(x, weight, scale, bias) if kernels else None


GGUF_BLOCK_FORMATS = {"Q8_0": 0, "Q4_0": 1}  # the block types quant.h computes on, by its format number


def gguf_block_linear(x: Tensor, blocks: Tensor, type_name: str, bias: Tensor | None, exact: bool) -> Tensor | None:
    """x @ W^T (+ bias) for W kept in llama.cpp's Q8_0 / Q4_0 blocks (uint8 [N, K / 32 * block bytes]), through
    quant.h: up to MAX_ROWS rows with int8-quantized activations (or float32 ones when `exact`), more rows through
    float32 row chunks and torch's matmul. None where the kernels do not apply (autograd, compile, not CPU)."""
    if torch.compiler.is_compiling():
        return None
    if not (x.dtype in _DTYPES and x.is_cpu and blocks.is_cpu and x.numel() > 0 and not torch.is_grad_enabled()):
        return None
    kernels = _module()
    return kernels.quant_linear(x, blocks, GGUF_BLOCK_FORMATS[type_name], bias, exact) if kernels else None


def picked_rows(blocks: Tensor, index: Tensor, type_name: str, width: int) -> Tensor | None:
    """Rows `index` (1-D) of a Q8_0 / Q4_0 block weight in either layout, dequantized to float32 [n, width] by
    quant.h (equal to the gguf package's dequantizer), or None where the kernels do not apply."""
    if (torch.compiler.is_compiling() or type_name not in GGUF_BLOCK_FORMATS or not blocks.is_cpu
            or not index.is_cpu or index.numel() == 0):
        return None
    kernels = _module()
    return kernels.quant_rows(blocks, index, GGUF_BLOCK_FORMATS[type_name], width) if kernels else None


def interleaved_blocks_kernel() -> bool:
    """Whether this build computes GGUF blocks regrouped 16 rows at a time with its own kernel (quant.h)."""
    kernels = _module()
    return bool(kernels) and kernels.quant_interleaved()


def fusable(module: nn.Module) -> bool:
    """Whether decode_layer (kernels/decode.py) may read this module's weight directly: a plain formers Linear,
    a QuantizedLinear of an int8 scheme (its weight and row scales: the same products as its module path's, the
    dynamic scheme's activations quantized as it does), or one holding GGUF Q8_0 / Q4_0 blocks (quant.h) with the
    default int8-quantized activations."""
    if type(module) is _linear_class():
        return True
    from ..quantization import linear as quantized  # late: quantization.linear imports this module

    return type(module) is quantized.QuantizedLinear and (
        module.scheme in ("int8", "int8_dynamic")
        or (module.scheme in quantized.GGUF_SCHEMES and not quantized.EXACT_GGUF_ACTIVATIONS))


def row_scale(module: nn.Module) -> Tensor | None:
    """The scale per output row that decode_layer multiplies a fusable module's products by: an int8 QuantizedLinear's
    `weight_scale`, None for every other kind."""
    return module.weight_scale if module.weight.dtype == torch.int8 else None


def dynamic_int8(module: nn.Module) -> bool:
    """Whether a fusable module quantizes its activations to int8 (torchao's int8_dynamic_activation_int8_weight)."""
    return getattr(module, "scheme", None) == "int8_dynamic"


def fusable_weights(groups: Sequence[Sequence[Tensor]], dtype: torch.dtype) -> bool:
    """decode_layer's weight groups (Q/K/V, O, gate/up, down) each all of `dtype`, all int8 (with row scales) or all
    GGUF blocks (uint8, and then only with int8-quantized activations: checked per call, so the switch works on a
    loaded model too)."""
    kinds = (dtype, torch.int8, torch.uint8)
    if not all(len({w.dtype for w in group}) == 1 and group[0].dtype in kinds for group in groups if group):
        return False
    return not (any(group and group[0].dtype == torch.uint8 for group in groups) and exact_gguf_activations())


def exact_gguf_activations() -> bool:
    """quantization/linear.py's switch: GGUF block layers keep float32 activations (their module path)."""
    from ..quantization import linear as quantized  # late: quantization.linear imports this module

    return quantized.EXACT_GGUF_ACTIVATIONS


def _plain(module: nn.Module) -> bool:
    """A formers Linear with no hooks (a hooked, wrapped or quantized module must run its own forward)."""
    return type(module) is _linear_class() and not module._forward_hooks and not module._forward_pre_hooks


def _linear_class() -> type:
    global _LINEAR
    if _LINEAR is None:
        from ..modeling.layers import Linear  # imported late: modeling.layers imports this module

        _LINEAR = Linear
    return _LINEAR


_LINEAR: type | None = None


def linear_group(x: Tensor, modules: Sequence[nn.Module]) -> list[Tensor]:
    """[m(x) for m in modules], computed in one parallel GEMV pass when every module is a plain Linear of
    one dtype (Q/K/V, gate/up); otherwise each module is called as usual."""
    first = modules[0].weight if hasattr(modules[0], "weight") else None
    if first is not None and _eligible(x, first) and all(_plain(m) for m in modules):
        kernels = _module()
        weights = [m.weight for m in modules]
        if kernels and all(w.dtype == first.dtype and w.is_contiguous() for w in weights):
            return kernels.gemv_group(x.contiguous(), weights, [m.bias for m in modules])
    return [m(x) for m in modules]


def float_logits(logits: Tensor) -> Tensor:
    """logits.float(), converted on the calling thread for an inference-mode CPU tensor of another float dtype
    (kernels.cpp `to_float32` says why); a float32 tensor comes back as is, like .float() returns it."""
    if (logits.dtype == torch.float32 or not logits.is_cpu or torch.is_grad_enabled()
            or torch.compiler.is_compiling() or not logits.is_floating_point() or logits.numel() < (1 << 15)):
        return logits.float()
    kernels = _module()
    return kernels.to_float32(logits) if kernels else logits.float()


def reference_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """The torch computation the kernels replace (for tests and benchmarks)."""
    return F.linear(x, weight, bias)
