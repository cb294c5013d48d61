"""EncoderDecoderCache: a self-attention cache and a cross-attention cache side by side (Whisper-style).

`is_updated[layer]` says whether the cross-attention keys of a layer were computed already (they
depend only on the encoder output). Legacy format: per layer (self k, self v, cross k, cross v).
"""
from __future__ import annotations

from typing import Iterable

import torch

from ..errors import CacheError
from .base import Cache
from .dynamic import DynamicCache


class EncoderDecoderCache(Cache):
    def __init__(self, self_attention_cache: Cache, cross_attention_cache: Cache) -> None:
        self.self_attention_cache = self_attention_cache
        self.cross_attention_cache = cross_attention_cache
        self.is_updated = {idx: cross_attention_cache.get_seq_length(idx) > 0
                           for idx in range(len(cross_attention_cache))}

    def __getitem__(self, layer_idx: int) -> tuple[torch.Tensor, ...]:
        if layer_idx >= len(self):
            raise KeyError(f"Cache only has {len(self)} layers, attempted to access layer {layer_idx}")
        return (*self.self_attention_cache[layer_idx], *self.cross_attention_cache[layer_idx])

    def __len__(self) -> int:
        return len(self.self_attention_cache)

    def update(self, key_states, value_states, layer_idx: int, cache_kwargs=None):
        """Self-attention update (cross-attention states go through `cross_attention_cache`)."""
        return self.self_attention_cache.update(key_states, value_states, layer_idx, cache_kwargs)

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        return self.self_attention_cache.get_seq_length(layer_idx)

    def get_max_length(self) -> int | None:
        return self.self_attention_cache.get_max_length()

    # --- legacy format --------------------------------------------------------------------------
    def to_legacy_cache(self) -> tuple[tuple[torch.Tensor, ...], ...]:
        if len(self.cross_attention_cache) == 0:
            return self.self_attention_cache.to_legacy_cache()
        return tuple(own + cross for own, cross in zip(self.self_attention_cache.to_legacy_cache(),
                                                       self.cross_attention_cache.to_legacy_cache()))

    @classmethod
    def from_legacy_cache(cls, past_key_values: Iterable[tuple[torch.Tensor, ...]] | None = None
                          ) -> "EncoderDecoderCache":
        cache = cls(DynamicCache(), DynamicCache())
        for layer_idx, layer in enumerate(past_key_values or ()):
            cache.self_attention_cache.update(layer[0], layer[1], layer_idx)
            if len(layer) > 2:
                cache.cross_attention_cache.update(layer[2], layer[3], layer_idx)
                cache.is_updated[layer_idx] = True
        return cache

    # --- editing ----------------------------------------------------------------------------------
    def reset(self) -> None:
        self.self_attention_cache.reset()
        self.cross_attention_cache.reset()
        self.is_updated = {idx: False for idx in self.is_updated}

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.self_attention_cache.reorder_cache(beam_idx)
        self.cross_attention_cache.reorder_cache(beam_idx)

    def _dynamic_pair(self, method: str) -> tuple[DynamicCache, DynamicCache]:
        own, cross = self.self_attention_cache, self.cross_attention_cache
        if not (isinstance(own, DynamicCache) and isinstance(cross, DynamicCache)):
            raise CacheError(f"EncoderDecoderCache.{method} needs DynamicCache for both self and cross attention, "
                             f"got {type(own).__name__} and {type(cross).__name__}")
        return own, cross

    def crop(self, maximum_length: int) -> None:
        self._dynamic_pair("crop")[0].crop(maximum_length)

    def batch_split(self, full_batch_size: int, split_size: int) -> list["EncoderDecoderCache"]:
        own, cross = self._dynamic_pair("batch_split")
        return [EncoderDecoderCache(a, b) for a, b in zip(own.batch_split(full_batch_size, split_size),
                                                          cross.batch_split(full_batch_size, split_size))]

    @classmethod
    def from_batch_splits(cls, splits: list["EncoderDecoderCache"]) -> "EncoderDecoderCache":
        return cls(DynamicCache.from_batch_splits([s.self_attention_cache for s in splits]),
                   DynamicCache.from_batch_splits([s.cross_attention_cache for s in splits]))

    def batch_repeat_interleave(self, repeats: int) -> None:
        for cache in self._dynamic_pair("batch_repeat_interleave"):
            cache.batch_repeat_interleave(repeats)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        for cache in self._dynamic_pair("batch_select_indices"):
            cache.batch_select_indices(indices)
