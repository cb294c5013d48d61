"""QuantizedCache (KIVI, "A Tuning-Free Asymmetric 2bit Quantization for KV Cache").

Per layer: a full-precision residual of the newest tokens and a quantized history of blocks of R =
`residual_length` tokens. Keys are quantized per channel over each block, values per token over
groups of `q_group_size` channels, both packed `8 // nbits` codes to a byte. When the residual
reaches R tokens its oldest full block is quantized once and appended; the history is never
re-quantized, never dequantized as a whole, and attention runs over it directly
(`quantized_attention`). While no block exists yet, the model's own kernel runs on the residual.

The `quanto` and `HQQ` backends (4.45's algorithm on those packages) live in `package_quantized`.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import CacheError, ConfigError
from .base import AttentionResult, Cache, Kernel
from .config import QuantizedCacheConfig, as_quantized_config
from .quantize import dequantize, pack, per_byte, quantize, unpack
from .quantized_attention import QuantizedHistory, quantized_attention


class _Growing:
    """A tensor that grows along dim 2 (by 1/4 at a time, at least `min_capacity`), with `view()` of the
    filled part."""

    __slots__ = ("buffer", "length", "min_capacity")

    def __init__(self, min_capacity: int = 0) -> None:
        self.buffer: torch.Tensor | None = None
        self.length = 0
        self.min_capacity = min_capacity

    def append(self, x: torch.Tensor) -> None:
        end = self.length + x.shape[2]
        if self.buffer is None or end > self.buffer.shape[2]:
            capacity = max(end, self.min_capacity)
            if self.buffer is not None:
                capacity = max(capacity, self.buffer.shape[2] * 5 // 4)
            self._reallocate(x, capacity)
        self.buffer[:, :, self.length:end] = x
        self.length = end

    def _reallocate(self, like: torch.Tensor, capacity: int) -> None:
        grown = like.new_empty(like.shape[:2] + (capacity,) + like.shape[3:])
        if self.buffer is not None:
            grown[:, :, :self.length] = self.buffer[:, :, :self.length]
        self.buffer = grown

    def view(self) -> torch.Tensor:
        return self.buffer[:, :, :self.length]

    def keep_last(self, count: int) -> None:
        """Drop all but the newest `count` entries (moved to the front); a buffer a long prompt blew up
        shrinks back to `min_capacity`, an emptied one is freed."""
        if count == 0:
            self.buffer, self.length = self.buffer[:, :, :0].clone(), 0  # holds no memory
            return
        newest = self.buffer[:, :, self.length - count:self.length].clone()
        self.length = 0
        if self.buffer.shape[2] > max(2 * self.min_capacity, count):
            self.buffer = None
            self.length = 0
            self._reallocate(newest, max(self.min_capacity, count))
        self.buffer[:, :, :count] = newest
        self.length = count

    def select(self, fn) -> None:
        if self.buffer is not None:
            self.buffer = fn(self.view())


class _Layer:
    """Quantized history + residual of one layer."""

    def __init__(self, block: int) -> None:
        self.parts = {name: _Growing() for name in
                      ("key_codes", "key_scale", "key_min", "value_codes", "value_scale", "value_min")}
        self.residual_keys, self.residual_values = _Growing(block + 1), _Growing(block + 1)

    def history(self, nbits: int, block: int) -> QuantizedHistory:
        return QuantizedHistory(**{name: part.view() for name, part in self.parts.items()}, nbits=nbits, block=block)

    @property
    def quantized_length(self) -> int:
        return self.parts["key_codes"].length

    def all_buffers(self) -> list[_Growing]:
        return [*self.parts.values(), self.residual_keys, self.residual_values]


class QuantizedCache(Cache):
    """Quantized KV cache built from a `QuantizedCacheConfig` (backend "native")."""

    def __init__(self, cache_config: QuantizedCacheConfig | dict | None = None) -> None:
        cache_config = as_quantized_config(cache_config)
        self.cache_config = cache_config
        self.nbits = cache_config.nbits
        self.residual_length = cache_config.residual_length
        self.q_group_size = cache_config.q_group_size
        self.axis_key, self.axis_value = cache_config.axis_key, cache_config.axis_value
        self.compute_dtype, self.device = cache_config.compute_dtype, cache_config.device
        self.block = cache_config.residual_length or cache_config.q_group_size  # tokens per key block
        if self.block % per_byte(self.nbits):
            raise ConfigError(f"cache_config.residual_length ({self.block}) must be a multiple of "
                              f"{per_byte(self.nbits)} for nbits={self.nbits}")
        self._layers: list[_Layer] = []
        self._seen_tokens = 0

    # --- storage ------------------------------------------------------------------------------------
    def _layer(self, layer_idx: int, key_states: torch.Tensor) -> _Layer:
        if layer_idx == len(self._layers):
            self._check_head_dim(key_states.shape[-1])
            self._layers.append(_Layer(self.block))
        elif layer_idx > len(self._layers):
            raise CacheError(f"{type(self).__name__}.update: layer {layer_idx} written before layer "
                             f"{len(self._layers)}")
        return self._layers[layer_idx]

    def _check_head_dim(self, dim: int) -> None:
        group = min(self.q_group_size, dim)
        if dim % per_byte(self.nbits) or dim % group:
            raise ConfigError(f"cache_config: head dim {dim} must be a multiple of {per_byte(self.nbits)} "
                              f"(nbits={self.nbits}) and of q_group_size ({self.q_group_size})")

    def _append(self, layer: _Layer, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        layer.residual_keys.append(key_states)
        layer.residual_values.append(value_states)

    def _flush(self, layer: _Layer) -> None:
        """Quantize every complete block at the front of the residual; keep the rest in full precision."""
        blocks = layer.residual_keys.length // self.block
        if not blocks:
            return
        count = blocks * self.block
        keys = layer.residual_keys.view()[:, :, :count]
        values = layer.residual_values.view()[:, :, :count]
        batch, heads, _, dim = keys.shape
        # keys: per channel over each block of R tokens
        codes, scale, low = quantize(keys.reshape(batch, heads, blocks, self.block, dim), self.nbits, dim=3)
        layer.parts["key_codes"].append(pack(codes, self.nbits, dim=4).reshape(batch, heads, count, -1))
        layer.parts["key_scale"].append(scale.squeeze(3))
        layer.parts["key_min"].append(low.squeeze(3))
        # values: per token over groups of g channels, codes packed along the tokens of each block
        group = min(self.q_group_size, dim)
        grouped = values.reshape(batch, heads, count, dim // group, group)
        codes, scale, low = quantize(grouped, self.nbits, dim=4)
        codes = codes.reshape(batch, heads, blocks, self.block, dim)
        layer.parts["value_codes"].append(pack(codes, self.nbits, dim=3).reshape(batch, heads, -1, dim))
        layer.parts["value_scale"].append(scale.squeeze(4))
        layer.parts["value_min"].append(low.squeeze(4))
        layer.residual_keys.keep_last(layer.residual_keys.length - count)
        layer.residual_values.keep_last(layer.residual_values.length - count)

    # --- protocol ---------------------------------------------------------------------------------
    def attend(self, query: torch.Tensor, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any], mask: torch.Tensor | None, kernel: Kernel) -> AttentionResult:
        if cache_kwargs.get("softcap") is not None:
            raise CacheError(f"{type(self).__name__} cannot attend with an attention-logit softcap (Gemma2); "
                             "use DynamicCache or HybridCache")
        layer = self._layer(layer_idx, key_states)
        if layer_idx == 0:
            self._seen_tokens += key_states.shape[-2]
        self._append(layer, key_states, value_states)
        residual_keys, residual_values = layer.residual_keys.view(), layer.residual_values.view()
        if layer.quantized_length == 0:
            result = kernel(query, residual_keys, residual_values, mask)
        else:
            result = quantized_attention(query, layer.history(self.nbits, self.block), residual_keys,
                                         residual_values, mask, cache_kwargs.get("scale"))
        self._flush(layer)
        return result

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new states; return every cached key/value, dequantized (API use; the model attends
        through `attend`, which never dequantizes the history)."""
        layer = self._layer(layer_idx, key_states)
        if layer_idx == 0:
            self._seen_tokens += key_states.shape[-2]
        self._append(layer, key_states, value_states)
        keys, values = self.dequantized(layer_idx)
        if layer.quantized_length == 0:  # views of the residual, which the flush below rewrites
            keys, values = keys.clone(), values.clone()
        self._flush(layer)
        return keys, values

    def dequantized(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All keys/values [B, Hkv, S, D] of `layer_idx` in full precision (history dequantized)."""
        layer = self._layers[layer_idx]
        residual_keys, residual_values = layer.residual_keys.view(), layer.residual_values.view()
        if layer.quantized_length == 0:
            return residual_keys, residual_values
        h = layer.history(self.nbits, self.block)
        batch, heads, count, _ = h.key_codes.shape
        dim, nblk, dtype = residual_keys.shape[-1], count // self.block, residual_keys.dtype
        keys = dequantize(h.key_codes.view(batch, heads, nblk, self.block, -1), h.key_scale[:, :, :, None],
                          h.key_min[:, :, :, None], self.nbits, 4, dtype).reshape(batch, heads, count, dim)
        groups = h.value_scale.shape[-1]
        codes = unpack(h.value_codes.view(batch, heads, nblk, -1, dim), self.nbits, dim=3)
        values = codes.to(dtype).reshape(batch, heads, count, groups, dim // groups)
        values = (values * h.value_scale[..., None] + h.value_min[..., None]).reshape(batch, heads, count, dim)
        return torch.cat([keys, residual_keys], dim=2), torch.cat([values, residual_values], dim=2)

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        layer_idx = layer_idx or 0
        if layer_idx >= len(self._layers):
            return 0
        layer = self._layers[layer_idx]
        return layer.quantized_length + layer.residual_keys.length

    def get_memory_footprint(self) -> int:
        """Bytes allocated for codes, scales, minima and the full-precision residual of every layer."""
        return sum(part.buffer.untyped_storage().nbytes() for layer in self._layers for part in layer.all_buffers()
                   if part.buffer is not None)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        for layer in self._layers:
            for buffer in layer.all_buffers():
                buffer.select(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def reset(self) -> None:
        self._layers, self._seen_tokens = [], 0

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dequantized(layer_idx)
