"""SinkCache (StreamingLLM, "Efficient Streaming Language Models with Attention Sinks").

Keeps the first `num_sink_tokens` keys plus the most recent ones, `window_length` in all, so
generation runs far past the window. When the cache is full, T new tokens push T old ones out and the
kept keys are rotated back by T positions, as transformers 4.45 does (only the first Drot dims of each
head rotate when the model's rotary embedding is partial). The mask reads the absolute position of
every kept key, so padded batches stay exact.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import CacheError
from .base import Cache


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class SinkCache(Cache):
    """`window_length` keys per layer: `num_sink_tokens` sinks + the most recent tokens."""

    def __init__(self, window_length: int, num_sink_tokens: int) -> None:
        if not 0 <= num_sink_tokens < window_length:
            raise CacheError(f"SinkCache: num_sink_tokens ({num_sink_tokens}) must be >= 0 and smaller than "
                             f"window_length ({window_length})")
        self.window_length = window_length
        self.num_sink_tokens = num_sink_tokens
        self.key_cache: list[torch.Tensor] = []
        self.value_cache: list[torch.Tensor] = []
        self._seen_tokens = 0
        self._positions: torch.Tensor | None = None  # absolute position of each cached key (all layers alike)
        self._unit_angle: torch.Tensor | None = None  # [Drot] rotation per position, learned from cos/sin
        self._last_cos_sin: tuple[torch.Tensor, torch.Tensor] | None = None
        self._rerotation: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    # --- positions ----------------------------------------------------------------------------------
    def _kept_from(self, new: int) -> int:
        """Index (into the current keys) from which recent keys survive a shift by `new` tokens."""
        return -self.window_length + self.num_sink_tokens + new

    def _shifts(self, new: int) -> bool:
        return bool(self.key_cache) and new + self.get_seq_length() >= self.window_length

    def _next_positions(self, cache_position: torch.Tensor) -> torch.Tensor:
        if self._positions is None:
            return cache_position
        old = self._positions.to(cache_position.device)
        if not self._shifts(cache_position.shape[0]):
            return torch.cat([old, cache_position])
        kept = old[self._kept_from(cache_position.shape[0]):]
        return torch.cat([old[:self.num_sink_tokens], kept, cache_position])

    def attention_key_length(self, query_length: int, layer_idx: int = 0) -> int:
        if not self.key_cache:
            return query_length
        if not self._shifts(query_length):
            return self.get_seq_length() + query_length
        kept = len(range(self.get_seq_length())[self._kept_from(query_length):])
        return self.num_sink_tokens + kept + query_length

    def key_positions(self, cache_position: torch.Tensor, layer_idx: int = 0) -> torch.Tensor:
        return self._next_positions(cache_position)

    # --- rotary bookkeeping ---------------------------------------------------------------------------
    def _learn_rotation(self, cos: torch.Tensor, sin: torch.Tensor) -> None:
        """Find the per-dim angle of one position step from two consecutive positions of row 0."""
        if cos.dim() == 3:
            cos, sin = cos[0], sin[0]  # [T, Drot]
        if cos.shape[0] >= 2:
            (c0, c1), (s0, s1) = cos[-2:].double(), sin[-2:].double()
        elif self._last_cos_sin is not None:
            (c0, s0), (c1, s1) = self._last_cos_sin, (cos[-1].double(), sin[-1].double())
        else:
            self._last_cos_sin = (cos[-1].double(), sin[-1].double())
            return
        # e^{i(a1 - a0)} = e^{i a1} * conj(e^{i a0}); normalised so attention-scaled tables work too
        self._unit_angle = torch.atan2(s1 * c0 - c1 * s0, c1 * c0 + s1 * s0)

    def _rerotation_for(self, shift: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin [Drot] that move a key `shift` positions back."""
        cached = self._rerotation.get(shift)
        if cached is None:
            angle = -shift * self._unit_angle
            cached = (angle.cos().float(), angle.sin().float())
            self._rerotation[shift] = cached
        return cached[0].to(like.device, like.dtype), cached[1].to(like.device, like.dtype)

    def _rerotate(self, keys: torch.Tensor, shift: int, rotary_dim: int) -> torch.Tensor:
        cos, sin = self._rerotation_for(shift, keys)
        if rotary_dim == keys.shape[-1]:
            return keys * cos + _rotate_half(keys) * sin
        rotated, passed = keys[..., :rotary_dim], keys[..., rotary_dim:]
        return torch.cat((rotated * cos + _rotate_half(rotated) * sin, passed), dim=-1)

    # --- protocol ---------------------------------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cache_kwargs = cache_kwargs or {}
        cos, sin = cache_kwargs.get("cos"), cache_kwargs.get("sin")
        using_rope = cos is not None and sin is not None
        new = key_states.shape[-2]
        if layer_idx == 0:
            self._seen_tokens += new
            if using_rope and self._unit_angle is None:
                self._learn_rotation(cos, sin)
            position = cache_kwargs.get("cache_position")
            if position is None:
                position = torch.arange(self._seen_tokens - new, self._seen_tokens, device=key_states.device)
            self._positions = self._next_positions(position)
        if layer_idx > len(self.key_cache):
            raise CacheError(f"SinkCache.update: layer {layer_idx} written before layer {len(self.key_cache)}")
        if layer_idx == len(self.key_cache):
            self.key_cache.append(key_states)
            self.value_cache.append(value_states)
        elif new + self.get_seq_length(layer_idx) < self.window_length:
            self.key_cache[layer_idx] = torch.cat([self.key_cache[layer_idx], key_states], dim=-2)
            self.value_cache[layer_idx] = torch.cat([self.value_cache[layer_idx], value_states], dim=-2)
        else:
            start, sinks = self._kept_from(new), self.num_sink_tokens
            keys, values = self.key_cache[layer_idx], self.value_cache[layer_idx]
            kept_keys = keys[:, :, start:]
            if using_rope:
                if self._unit_angle is None:
                    raise CacheError("SinkCache could not learn the rotary step: it needs two positions first")
                rotary_dim = cache_kwargs.get("partial_rotation_size") or cos.shape[-1]
                kept_keys = self._rerotate(kept_keys, new, rotary_dim)
            self.key_cache[layer_idx] = torch.cat([keys[:, :, :sinks], kept_keys, key_states], dim=-2)
            self.value_cache[layer_idx] = torch.cat([values[:, :, :sinks], values[:, :, start:], value_states],
                                                    dim=-2)
        return self.key_cache[layer_idx], self.value_cache[layer_idx]

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        """Keys held for `layer_idx` (at most `window_length` once the window has slid)."""
        layer_idx = layer_idx or 0
        return self.key_cache[layer_idx].shape[-2] if layer_idx < len(self.key_cache) else 0

    def get_max_length(self) -> int | None:
        return self.window_length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        for store in (self.key_cache, self.value_cache):
            for idx, tensor in enumerate(store):
                store[idx] = tensor.index_select(0, beam_idx.to(tensor.device))

    def reset(self) -> None:
        self.key_cache, self.value_cache = [], []
        self._seen_tokens, self._positions = 0, None

    def crop(self, max_length: int) -> None:
        """Forget the newest positions from absolute position `max_length` on (negative: that many from the
        end). Keys the window already pushed out do not come back."""
        max_length = self._seen_tokens + max_length if max_length < 0 else max_length
        drop = self._seen_tokens - max_length
        if drop <= 0:
            return
        keep = max(self.get_seq_length() - drop, 0)
        self.key_cache = [t[:, :, :keep] for t in self.key_cache]
        self.value_cache = [t[:, :, :keep] for t in self.value_cache]
        self._positions = self._positions[:keep] if self._positions is not None else None
        self._seen_tokens = max_length

    def __len__(self) -> int:
        return len(self.key_cache)

    def __getitem__(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.key_cache[layer_idx], self.value_cache[layer_idx]
