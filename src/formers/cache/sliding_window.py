"""SlidingWindowCache: a ring buffer of `sliding_window` slots per layer (Mistral-style attention).

Position p lives in slot p % W, so a decode step writes one slot in place and nothing shifts. The
mask reads each slot's absolute position (`key_positions`), which keeps causality, the window and the
padding mask right however the ring has wrapped. A step with several new tokens (prefill, a chat
turn) attends over the ring as it was plus the new keys, then keeps the last W of them: a prompt
longer than the window is handled exactly.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import CacheError, ConfigError
from .static import StaticCache, layer_windows, sliding_window_of


def ring_positions(last: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Position held by each ring slot once positions up to `last` are written; negative: never written."""
    return last - torch.remainder(last - slots, slots.shape[0])


def ring_key_positions(cache_position: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """[S] positions of the keys `ring_update` returns for a step writing `cache_position`."""
    if cache_position.shape[0] == 1:
        return ring_positions(cache_position[-1], slots)
    return torch.cat([ring_positions(cache_position[0] - 1, slots), cache_position])


def ring_key_length(query_length: int, ring_size: int) -> int:
    return ring_size if query_length == 1 else ring_size + query_length


def ring_update(ring_keys: torch.Tensor, ring_values: torch.Tensor, key_states: torch.Tensor,
                value_states: torch.Tensor, cache_position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Write keys/values [B, Hkv, T, D] at `cache_position` into ring buffers [B, Hkv, W, D]; return what
    attention sees: the ring itself (T == 1) or the ring as it was followed by the new keys (T > 1)."""
    size = ring_keys.shape[2]
    new = key_states.shape[2]
    cache_position = cache_position.to(ring_keys.device)
    if new == 1:
        slot = torch.remainder(cache_position, size)
        ring_keys.index_copy_(2, slot, key_states)
        ring_values.index_copy_(2, slot, value_states)
        return ring_keys, ring_values
    keys = torch.cat([ring_keys, key_states], dim=2)
    values = torch.cat([ring_values, value_states], dim=2)
    kept = min(new, size)
    slots = torch.remainder(cache_position[-kept:], size)
    ring_keys.index_copy_(2, slots, key_states[:, :, -kept:])
    ring_values.index_copy_(2, slots, value_states[:, :, -kept:])
    return keys, values


class SlidingWindowCache(StaticCache):
    """Ring-buffer cache of `min(config.sliding_window, max_cache_len)` slots per layer; compile-friendly.

    Same arguments as StaticCache. Generation may run past `max_cache_len` when the ring spans the
    whole window (the window is all attention ever needs).
    """

    def __init__(self, config, batch_size: int | None = None, max_cache_len: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 max_batch_size: int | None = None,
                 layer_device_map: dict[int, torch.device | str | int] | None = None) -> None:
        window = sliding_window_of(config)
        if window is None:
            raise ConfigError("SlidingWindowCache needs a model whose config sets `sliding_window` (e.g. Mistral); "
                              f"no layer of {type(config).__name__} attends through a window "
                              "(its layer_sliding_window is None for every layer)")
        if None in layer_windows(config):  # a ring of W slots would silently cut a global layer's history
            raise ConfigError(f"SlidingWindowCache: {type(config).__name__} has global layers besides the "
                              f"sliding ones (layer_sliding_window is None for some); use HybridCache")
        self.sliding_window = window
        max_cache_len = config.max_position_embeddings if max_cache_len is None else max_cache_len
        super().__init__(config, batch_size, min(window, max_cache_len), device, dtype, max_batch_size,
                         layer_device_map)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        positions = self._write_positions(key_states.shape[-2], layer_idx, cache_kwargs)
        return ring_update(self.key_cache[layer_idx], self.value_cache[layer_idx], key_states, value_states,
                           positions)

    def get_max_length(self) -> int | None:
        return None  # the window slides: no limit on the sequence

    def attention_key_length(self, query_length: int, layer_idx: int = 0) -> int:
        return ring_key_length(query_length, self.max_cache_len)

    def key_positions(self, cache_position: torch.Tensor, layer_idx: int = 0) -> torch.Tensor:
        return ring_key_positions(cache_position.to(self._slots.device), self._slots)

    def ensure_capacity(self, total_length: int) -> None:
        if self.max_cache_len < self.sliding_window and total_length > self.max_cache_len:
            raise CacheError(f"SlidingWindowCache holds {self.max_cache_len} slots, less than the window "
                             f"({self.sliding_window}), but {total_length} positions are needed; build it with "
                             f"max_cache_len >= {min(total_length, self.sliding_window)}")

    def crop(self, max_length: int) -> None:
        """Forget positions from `max_length` on. Ring slots the dropped positions overwrote are gone, so
        attention after a crop is exact only if the cropped positions had not wrapped the ring."""
        super().crop(max_length)
