"""Swap nn.Linear layers for QuantizedLinear while the checkpoint streams in (no full-precision model
is built first): a post-construction transform that runs inside from_pretrained's weight stream.

Three sources reach a linear layer's weight:
- `QuantizedBlocks` from a GGUF file loaded with keep_quantized=True: Q8_0 and Q4_0 stay the file's blocks
  byte for byte (QuantizedLinear schemes q8_0 / q4_0, computed on by kernels/quant.h); Q4_1/Q4_K become
  int4 with group size 32 (the blocks' own scales). The input embedding keeps the file's blocks
  (QuantizedEmbedding); a tied LM head is built from the same blocks (for Q8_0 / Q4_0 the very same
  tensor). The int4 repack runs over row slices (`REPACK_ROWS`), so the int32 / float temporaries stay
  small next to the weight, and int4 scales and zeros are stored in the dtype the kernel computes in
  (bfloat16 for float32 activations on CPU: linear.py), which halves them;
- a float tensor while a TorchAoConfig is active: quantized to int8 or int4 here;
- the int8/uint8 weight of a saved quantized model, with its scales: rebuilt as saved (a uint8 weight whose
  row is in_features / 32 * 34 or * 18 bytes wide is a saved layer of Q8_0 / Q4_0 blocks: it needs no scales).
Everything else passes through unchanged (GGUF blocks of other types are dequantized).
"""
from __future__ import annotations

from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..gguf.dequant import BLOCK_LAYOUT, INT4_TYPES, int4_parts
from ..gguf.tensors import QuantizedBlocks
from . import linear as linear_kernels
from .config import TorchAoConfig
from .embedding import QuantizedEmbedding
from .linear import GGUF_SCHEMES, QuantizedLinear, nibbles_to_values, pack_int4_for_cpu
from .swap import reference_kind

KEPT_GGUF_TYPES = INT4_TYPES + ("Q8_0",)
BLOCK_TYPES = tuple(GGUF_SCHEMES.values())  # kept exactly as the file stores them
# rows repacked per step: a multiple of the int4 kernel's row blocks (64 on AVX-512, 32 on AVX2), so slices
# pack to the same bytes as the whole tensor (tests/gguf/test_load_memory.py checks it)
REPACK_ROWS = 1024


def quantize_int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric per-row int8 as torchao's int8_weight_only computes it (the scheme 4.45's TorchAoConfig names):
    scale = max |w| / 127.5 (at least float32's eps), q = round(w * (1 / scale)) within [-128, 127];
    weight ≈ q * scale[:, None]."""
    w = weight.float()
    scale = (w.abs().amax(dim=1) / 127.5).clamp_min(torch.finfo(torch.float32).eps)
    return torch.clamp(torch.round(w * (1.0 / scale)[:, None]), -128, 127).to(torch.int8), scale


def quantize_int4(weight: Tensor, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric int4 per group of `group_size` columns, weight ≈ (q - 8) * scale + zero, as torchao 0.5.0's
    int4_weight_only computes it (choose_qparams_affine, then quantize_affine with a float zero point), op for op in
    the weight's dtype: scale = (max - min) / 15, at least 1e-6; zero = min + 8 scale, rounded to bfloat16; q =
    round((w - (zero - 8 scale)) / scale) clamped to [0, 15]."""
    rows, cols = weight.shape
    if cols % group_size:
        raise CheckpointError(f"int4 quantization: in_features {cols} is not a multiple of group_size {group_size}")
    w = weight.reshape(rows, cols // group_size, group_size)
    low = w.amin(dim=-1)
    scale = ((w.amax(dim=-1) - low) / 15.0).clamp(min=1e-6)
    zero = (low + scale * 8.0).to(torch.bfloat16)
    lowest = zero - scale * 8.0
    q = torch.clamp(torch.round((w - lowest[..., None]) / scale[..., None]), 0, 15).to(torch.int32)
    return q.reshape(rows, cols), scale, zero


def int4_packable(out_features: int, in_features: int, group_size: int) -> bool:
    """Shapes torch's int4 CPU kernel accepts (others stay in full precision)."""
    return out_features % 16 == 0 and in_features % group_size == 0 and in_features % 2 == 0


class LinearQuantizer:
    """Filters a (model key, tensor) stream: weights of quantizable linears are consumed and the layer is
    replaced; everything else is yielded for the ordinary assignment."""

    def __init__(self, model: nn.Module, config: TorchAoConfig | None, dtype: torch.dtype, device: torch.device):
        self.model, self.config, self.dtype, self.device = model, config, dtype, device
        self.prefix = getattr(model, "base_model_prefix", "model") + "."
        self.pending: dict[str, dict[str, Tensor]] = {}  # saved quantized layers whose parts are still arriving
        self.replaced = 0

    def _module(self, key: str, kinds: tuple[type, ...]) -> tuple[str, nn.Module] | None:
        """(name, module) of the module that owns checkpoint key `key`, if it is one of `kinds`."""
        module_name, _, _ = key.rpartition(".")
        for name in (module_name, self.prefix + module_name, module_name.removeprefix(self.prefix)):
            try:
                module = self.model.get_submodule(name)
            except AttributeError:
                continue
            if isinstance(module, kinds):
                return name, module
        return None

    def _skipped(self, name: str) -> bool:
        skip = self.config.skipped() if self.config is not None else []
        return any(name == s or name.endswith("." + s) or name.startswith(s + ".") for s in skip)

    def stream(self, tensors: Iterable[tuple[str, Tensor | QuantizedBlocks]]) -> Iterator[tuple[str, Tensor]]:
        for key, value in tensors:
            if isinstance(value, QuantizedBlocks) and self._consume_embedding(key, value):
                continue
            found = self._module(key, (nn.Linear, QuantizedLinear))
            leaf = key.rpartition(".")[2]
            if found is not None and self._consume(found[0], found[1], leaf, value):
                continue
            yield key, value.dequantize() if isinstance(value, QuantizedBlocks) else value
        if self.pending:
            raise CheckpointError(f"quantized layers {sorted(self.pending)} are missing their weight or scales "
                                  "in the checkpoint")

    def _consume_embedding(self, key: str, blocks: QuantizedBlocks) -> bool:
        """An embedding table in blocks stays in them; when the config ties the LM head to it, the head is
        built from the same blocks (a tied head that the kernels cannot take keeps both in float)."""
        found = self._module(key, (nn.Embedding,))
        if found is None or not key.endswith(".weight"):
            return False
        name, module = found
        head = self.model.get_output_embeddings() if self.model.config.tie_word_embeddings else None
        tied = isinstance(head, nn.Linear) and module is self.model.get_input_embeddings()
        if tied and not self._blocks_fit(blocks):
            return False
        table = QuantizedEmbedding(blocks.raw, blocks.type_name, blocks.shape[1], self.dtype)  # raw: an owned copy
        self._replace(name, module, table.to(self.device))
        if tied:
            head_name = next(n for n, m in self.model.named_modules() if m is head)
            self._replace(head_name, head, self._from_blocks(QuantizedBlocks(blocks.type_name, blocks.shape,
                                                                             table.blocks)))
        return True

    @staticmethod
    def _blocks_fit(blocks: QuantizedBlocks) -> bool:
        return blocks.type_name in BLOCK_TYPES or int4_packable(*blocks.shape, 32)

    def _consume(self, name: str, module: nn.Module, leaf: str, value) -> bool:
        if isinstance(value, QuantizedBlocks) and leaf == "weight" and value.type_name in KEPT_GGUF_TYPES:
            if not self._blocks_fit(value):
                return False  # the int4 kernel cannot take this shape: dequantized like other types
            self._replace(name, module, self._from_blocks(value))
            return True
        if leaf == "weight" and isinstance(value, Tensor) and isinstance(module, nn.Linear) and \
                self._saved_block_type(module, value) is not None:
            self._replace(name, module, QuantizedLinear.gguf_blocks(value.to(self.device), self._saved_block_type(
                module, value), module.in_features))
            return True
        saved_part = leaf in ("weight_scale", "scales_and_zeros") or (
            leaf == "weight" and isinstance(value, Tensor) and value.dtype in (torch.int8, torch.uint8))
        if saved_part:
            parts = self.pending.setdefault(name, {})
            parts[leaf] = value
            if "weight" in parts and len(parts) == 2:
                self._replace(name, module, self._from_saved(name, self.pending.pop(name)))
            return True
        if (isinstance(value, Tensor) and leaf == "weight" and self.config is not None and value.dim() == 2
                and isinstance(module, nn.Linear) and not self._skipped(name)
                and reference_kind(self.model, name) == "linear"  # torchao under 4.45 takes nn.Linear layers only
                and (self.config.scheme != "int4" or int4_packable(*value.shape, self.config.group_size))):
            if self.config.scheme != "int4":
                new = QuantizedLinear.int8(*self._place(*quantize_int8(value)), dynamic_activations=self._dynamic)
            else:
                new = QuantizedLinear.int4(*self._place(*quantize_int4(value.to(self.dtype), self.config.group_size)))
            self._replace(name, module, new)
            return True
        return False

    @staticmethod
    def _saved_block_type(module: nn.Linear, value: Tensor) -> str | None:
        """"Q8_0" / "Q4_0" when `value` is a saved layer's blocks: uint8 rows of in_features / 32 blocks (int4
        nibbles, the other uint8 weight, are in_features / 2 bytes wide, so the widths never collide)."""
        if value.dtype != torch.uint8 or value.dim() != 2 or module.in_features % 32:
            return None
        widths = {module.in_features // 32 * BLOCK_LAYOUT[t][1]: t for t in BLOCK_TYPES}
        return widths.get(value.shape[1]) if value.shape[0] == module.out_features else None

    @property
    def _dynamic(self) -> bool:
        """Whether int8 layers quantize their inputs too (int8_dynamic_activation_int8_weight)."""
        return self.config is not None and self.config.scheme == "int8_dynamic"

    def _place(self, q: Tensor, *floats: Tensor) -> tuple[Tensor, ...]:
        return (q.to(self.device),) + tuple(f.to(device=self.device, dtype=self.dtype) for f in floats)

    def _scale_dtype(self) -> torch.dtype:
        """The dtype torch's int4 kernel consumes scales in (QuantizedLinear.forward converts to it on every
        call): int4 scales and zeros are 0.25 bytes a weight in float32, half that in bfloat16."""
        if self.dtype == torch.float32 and self.device.type == "cpu":
            return linear_kernels.FP32_KERNEL_DTYPE
        return self.dtype

    def _from_blocks(self, blocks: QuantizedBlocks) -> QuantizedLinear:
        """Q8_0 / Q4_0 blocks as they are; Q4_1 / Q4_K repacked slice by slice into torch's int4 layout (no
        full-size temporaries)."""
        rows, cols = blocks.shape
        if blocks.type_name in BLOCK_TYPES:
            return QuantizedLinear.gguf_blocks(blocks.raw.to(self.device), blocks.type_name, cols)
        slices = [(start, min(start + REPACK_ROWS, rows)) for start in range(0, rows, REPACK_ROWS)]
        if self.device.type != "cpu":
            raise CheckpointError("int4 weights run on torch's CPU kernel only; load the model with device_map='cpu'")
        packed = torch.empty(rows, cols // 2, dtype=torch.uint8)
        scales_and_zeros = torch.empty(cols // 32, rows, 2, dtype=self._scale_dtype())
        for start, stop in slices:
            q, scale, zero = int4_parts(blocks.raw[start:stop], blocks.type_name, (stop - start, cols))
            packed[start:stop] = pack_int4_for_cpu(q)
            scales_and_zeros[:, start:stop] = torch.stack([scale.t(), zero.t()], dim=-1)
        module = QuantizedLinear(cols, rows, "int4", 32)
        module.register_buffer("weight", packed)
        module.register_buffer("scales_and_zeros", scales_and_zeros)
        return module

    def _from_saved(self, name: str, parts: dict[str, Tensor]) -> QuantizedLinear:
        weight = parts["weight"]
        if weight.dtype == torch.int8 and "weight_scale" in parts:
            return QuantizedLinear.int8(*self._place(weight, parts["weight_scale"]), dynamic_activations=self._dynamic)
        if weight.dtype == torch.uint8 and "scales_and_zeros" in parts:
            scale, zero = parts["scales_and_zeros"].unbind(-1)  # [K / G, N] each
            return QuantizedLinear.int4(*self._place(nibbles_to_values(weight), scale.t(), zero.t()))
        raise CheckpointError(f"quantized layer {name!r}: weight of dtype {weight.dtype} does not match the saved "
                              f"scales {sorted(parts)}")

    def _replace(self, name: str, old: nn.Module, new: QuantizedLinear) -> None:
        bias = old.bias if isinstance(old, nn.Linear) else getattr(old, "bias", None)
        if bias is not None:
            new.bias = nn.Parameter(bias.data if not bias.is_meta else torch.empty(bias.shape, device="meta"),
                                    requires_grad=False)
        parent_name, _, child = name.rpartition(".")
        setattr(self.model.get_submodule(parent_name) if parent_name else self.model, child, new)
        self.replaced += 1
