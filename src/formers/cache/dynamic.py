"""DynamicCache: grows with the sequence, in chunks rather than one torch.cat per token.

Each layer owns a buffer [B, Hkv, capacity, D] and a length; `update` writes the new positions in
place and returns views of the filled part. `reserve` lets generate() size the buffers once.
`fork()` shares the buffers copy-on-write: whichever side writes a layer first copies it, so a
prefilled prefix can be forked per prompt for the price of one copy, made when it is needed.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch

from .base import Cache

_GROWTH_CHUNK = 256  # positions; capacity grows to a multiple of this and by at least 1.5x


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class DynamicCache(Cache):
    def __init__(self, num_hidden_layers: int | None = None) -> None:
        self._keys: list[torch.Tensor] = []
        self._values: list[torch.Tensor] = []
        self._lengths: list[int] = []
        self._shared: list[bool] = []  # layer buffers another cache also points at (copy before writing)
        self._reserved = 0
        self._seen_tokens = 0

    # --- views ------------------------------------------------------------------------------
    @property
    def key_cache(self) -> list[torch.Tensor]:
        return [k[:, :, :n] for k, n in zip(self._keys, self._lengths)]

    @property
    def value_cache(self) -> list[torch.Tensor]:
        return [v[:, :, :n] for v, n in zip(self._values, self._lengths)]

    def __getitem__(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx >= len(self._keys):
            raise KeyError(f"Cache only has {len(self._keys)} layers, attempted to access layer {layer_idx}")
        n = self._lengths[layer_idx]
        return self._keys[layer_idx][:, :, :n], self._values[layer_idx][:, :, :n]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return (self[i] for i in range(len(self)))

    def __len__(self) -> int:
        return len(self._keys)

    # --- protocol -----------------------------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        new = key_states.shape[-2]
        if layer_idx == 0:
            self._seen_tokens += new
        if layer_idx >= len(self._keys):
            if layer_idx > len(self._keys):
                raise IndexError(f"DynamicCache.update: layer {layer_idx} written before layer {len(self._keys)}")
            capacity = max(self._reserved, _round_up(new, _GROWTH_CHUNK))
            self._keys.append(self._allocate(key_states, capacity))
            self._values.append(self._allocate(value_states, capacity))
            self._lengths.append(0)
            self._shared.append(False)
        start = self._lengths[layer_idx]
        end = start + new
        capacity = self._keys[layer_idx].shape[2]
        if end > capacity:
            self._grow(layer_idx, max(end, capacity * 3 // 2))
        elif self._shared[layer_idx]:
            self._grow(layer_idx, capacity)
        self._keys[layer_idx][:, :, start:end] = key_states
        self._values[layer_idx][:, :, start:end] = value_states
        self._lengths[layer_idx] = end
        return self._keys[layer_idx][:, :, :end], self._values[layer_idx][:, :, :end]

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        layer_idx = layer_idx or 0
        return self._lengths[layer_idx] if layer_idx < len(self._lengths) else 0

    def reserve(self, total_length: int) -> None:
        """Make room for `total_length` positions per layer so no later update reallocates."""
        self._reserved = max(self._reserved, total_length)
        for idx in range(len(self._keys)):
            if self._keys[idx].shape[2] < total_length:
                self._grow(idx, total_length)

    def _grow(self, layer_idx: int, min_capacity: int) -> None:
        """Move layer `layer_idx` into fresh, unshared buffers of at least `min_capacity` positions."""
        capacity = _round_up(min_capacity, _GROWTH_CHUNK)
        n = self._lengths[layer_idx]
        for store in (self._keys, self._values):
            old = store[layer_idx]
            grown = self._allocate(old, capacity)
            grown[:, :, :n] = old[:, :, :n]
            store[layer_idx] = grown
        self._shared[layer_idx] = False

    def _allocate(self, like: torch.Tensor, capacity: int) -> torch.Tensor:
        """An uninitialised buffer [B, Hkv, capacity, D] shaped and typed like `like` (hook for offloading)."""
        return like.new_empty(like.shape[:2] + (capacity, like.shape[-1]))

    # --- reuse ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every position; the buffers stay allocated for the next prompt."""
        self._lengths = [0] * len(self._lengths)
        self._seen_tokens = 0

    def fork(self) -> "DynamicCache":
        """A cache with the same contents that shares the buffers until either side writes a layer."""
        child = type(self).__new__(type(self))
        child.__dict__.update(self.__dict__)
        child._keys, child._values = list(self._keys), list(self._values)
        child._lengths = list(self._lengths)
        self._shared = [True] * len(self._keys)
        child._shared = [True] * len(self._keys)
        return child

    def copy(self) -> "DynamicCache":
        """An independent cache holding a copy of the filled positions only."""
        child = self.fork()
        for idx in range(len(child)):
            child._grow(idx, child._lengths[idx] or 1)
        return child

    def __deepcopy__(self, memo) -> "DynamicCache":
        return self.copy()

    # --- legacy format --------------------------------------------------------------------------
    def to_legacy_cache(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        return tuple(self[i] for i in range(len(self)))

    @classmethod
    def from_legacy_cache(cls, past_key_values: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                          num_hidden_layers: int | None = None) -> "DynamicCache":
        cache = cls()
        for layer_idx, (keys, values) in enumerate(past_key_values or ()):
            cache.update(keys, values, layer_idx)
        return cache

    # --- editing ----------------------------------------------------------------------------------
    def crop(self, max_length: int) -> None:
        """Keep the first `max_length` positions (negative: drop that many from the end)."""
        if max_length < 0:
            max_length = self.get_seq_length() - abs(max_length)
        if self.get_seq_length() <= max_length:
            return
        self._seen_tokens = max_length
        self._lengths = [min(n, max_length) for n in self._lengths]

    def _map_batch(self, fn) -> None:
        for store in (self._keys, self._values):
            for idx, (buffer, n) in enumerate(zip(store, self._lengths)):
                store[idx] = fn(buffer[:, :, :n])
        self._shared = [False] * len(self._keys)  # fn made new tensors
        self._reserved = 0

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map_batch(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map_batch(lambda t: t[indices, ...])

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map_batch(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_split(self, full_batch_size: int, split_size: int,
                    num_hidden_layers: int | None = None) -> list["DynamicCache"]:
        out = []
        for start in range(0, full_batch_size, split_size):
            part = DynamicCache()
            part._seen_tokens = self._seen_tokens
            for idx, (keys, values) in enumerate(self):
                part.update(keys[start:start + split_size], values[start:start + split_size], idx)
            part._seen_tokens = self._seen_tokens
            out.append(part)
        return out

    @classmethod
    def from_batch_splits(cls, splits: list["DynamicCache"], num_hidden_layers: int | None = None) -> "DynamicCache":
        cache = cls()
        for idx in range(len(splits[0]) if splits else 0):
            cache.update(torch.cat([s[idx][0] for s in splits]), torch.cat([s[idx][1] for s in splits]), idx)
        return cache
