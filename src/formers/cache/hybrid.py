"""HybridCache: sliding-window layers and global layers side by side (Gemma2 alternates them); which
layer slides is what the model's config says (`layer_sliding_window`), the truth the masks read too.

Sliding layers are ring buffers of min(sliding_window, max_cache_len) slots (see sliding_window.py),
global layers static buffers of max_cache_len slots; `layer_kind` tells the decoder which layers share
a layout, so each kind gets its own mask.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError
from .sliding_window import ring_key_length, ring_key_positions, ring_update
from .static import StaticCache, layer_windows, sliding_window_of


class HybridCache(StaticCache):
    """Arguments as StaticCache; `config.sliding_window` must be set."""

    def __init__(self, config, batch_size: int | None = None, max_cache_len: int | None = None,
                 device: torch.device | str | None = "cpu", dtype: torch.dtype = torch.float32,
                 max_batch_size: int | None = None,
                 layer_device_map: dict[int, torch.device | str | int] | None = None) -> None:
        if sliding_window_of(config) is None:
            raise ConfigError("HybridCache needs a model whose config sets `sliding_window`; "
                              f"no layer of {type(config).__name__} attends through a window "
                              "(its layer_sliding_window is None for every layer)")
        self.sliding_window = sliding_window_of(config)
        self._sliding = [window is not None for window in layer_windows(config)]
        max_cache_len = config.max_position_embeddings if max_cache_len is None else max_cache_len
        self.ring_size = min(self.sliding_window, max_cache_len)
        super().__init__(config, batch_size, max_cache_len, device, dtype, max_batch_size, layer_device_map)
        self.is_sliding = torch.tensor(self._sliding, dtype=torch.bool, device=self.device)
        self._ring_slots = torch.arange(self.ring_size, device=self.device)

    def _layer_length(self, config, layer_idx: int) -> int:
        return self.ring_size if self._sliding[layer_idx] else self.max_cache_len

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._sliding[layer_idx]:
            return super().update(key_states, value_states, layer_idx, cache_kwargs)
        positions = self._write_positions(key_states.shape[-2], layer_idx, cache_kwargs)
        return ring_update(self.key_cache[layer_idx], self.value_cache[layer_idx], key_states, value_states,
                           positions)

    def layer_kind(self, layer_idx: int) -> bool:
        return self._sliding[layer_idx]

    def attention_key_length(self, query_length: int, layer_idx: int = 0) -> int:
        if not self._sliding[layer_idx]:
            return self.max_cache_len
        return ring_key_length(query_length, self.ring_size)

    def key_positions(self, cache_position: torch.Tensor, layer_idx: int = 0) -> torch.Tensor:
        if not self._sliding[layer_idx]:
            return self._slots
        return ring_key_positions(cache_position.to(self._ring_slots.device), self._ring_slots)
