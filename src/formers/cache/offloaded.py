"""OffloadedCache: a DynamicCache whose layers live in pinned CPU memory while the model runs on CUDA.

Only two layers are on the GPU at a time: while layer i attends, layer i+1 is copied in on a side
stream. New tokens are appended to the CPU copy as they arrive (a few KB per step) instead of moving
whole layers back and forth, and a layer's GPU copy is simply dropped once it has been used.

On a machine without CUDA (or a model on CPU) there is nothing to offload to: the cache behaves
exactly as DynamicCache, so code written for a GPU still runs and gives the same tokens.
"""
from __future__ import annotations

from typing import Any

import torch

from .dynamic import _GROWTH_CHUNK, DynamicCache, _round_up


class OffloadedCache(DynamicCache):
    """Drop-in DynamicCache replacement that keeps GPU memory to ~2 layers of cache."""

    def __init__(self) -> None:
        super().__init__()
        self._offloading = False  # decided by the device of the first update
        self._prefetch_stream = None
        self._prefetched: dict[int, tuple[torch.Tensor, torch.Tensor, Any]] = {}
        self.original_device: list[torch.device] = []

    def _allocate(self, like: torch.Tensor, capacity: int) -> torch.Tensor:
        if not self._offloading:
            return super()._allocate(like, capacity)
        return torch.empty(like.shape[:2] + (capacity, like.shape[-1]), dtype=like.dtype, device="cpu",
                           pin_memory=True)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._keys:
            self._offloading = key_states.device.type == "cuda"
        if not self._offloading:
            return super().update(key_states, value_states, layer_idx, cache_kwargs)
        if layer_idx == 0:
            self._seen_tokens += key_states.shape[-2]
        if layer_idx < len(self._keys):
            old_keys, old_values = self._take(layer_idx)
            keys = torch.cat([old_keys, key_states], dim=-2)
            values = torch.cat([old_values, value_states], dim=-2)
        else:
            keys, values = key_states, value_states
            self.original_device.append(key_states.device)
        self._append_to_host(layer_idx, key_states, value_states)
        self._prefetch((layer_idx + 1) % len(self._keys))
        return keys, values

    # --- host side ----------------------------------------------------------------------------------
    def _append_to_host(self, layer_idx: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        new = key_states.shape[-2]
        if layer_idx == len(self._keys):
            capacity = max(self._reserved, _round_up(new, _GROWTH_CHUNK))
            self._keys.append(self._allocate(key_states, capacity))
            self._values.append(self._allocate(value_states, capacity))
            self._lengths.append(0)
            self._shared.append(False)
        start = self._lengths[layer_idx]
        if start + new > self._keys[layer_idx].shape[2] or self._shared[layer_idx]:
            torch.cuda.current_stream().synchronize()  # pending copies into the old buffer (rare: growth)
            self._grow(layer_idx, max(start + new, self._keys[layer_idx].shape[2] * 3 // 2))
        self._keys[layer_idx][:, :, start:start + new].copy_(key_states, non_blocking=True)
        self._values[layer_idx][:, :, start:start + new].copy_(value_states, non_blocking=True)
        self._lengths[layer_idx] = start + new

    # --- device side --------------------------------------------------------------------------------
    def _prefetch(self, layer_idx: int) -> None:
        """Start copying layer `layer_idx` to its device on the side stream."""
        if layer_idx in self._prefetched or layer_idx >= len(self._keys):
            return
        if self._prefetch_stream is None:
            self._prefetch_stream = torch.cuda.Stream()
        stream, device = self._prefetch_stream, self.original_device[layer_idx]
        stream.wait_stream(torch.cuda.current_stream())  # host appends of this layer are enqueued there
        n = self._lengths[layer_idx]
        with torch.cuda.stream(stream):
            keys = self._keys[layer_idx][:, :, :n].to(device, non_blocking=True)
            values = self._values[layer_idx][:, :, :n].to(device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(stream)
        self._prefetched[layer_idx] = (keys, values, done)

    def _take(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer_idx` on its device (waiting for its prefetch); the GPU copy is dropped after use."""
        self._prefetch(layer_idx)
        keys, values, done = self._prefetched.pop(layer_idx)
        current = torch.cuda.current_stream()
        current.wait_event(done)
        keys.record_stream(current)
        values.record_stream(current)
        return keys, values

    def __getitem__(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = super().__getitem__(layer_idx)
        if not self._offloading:
            return keys, values
        torch.cuda.current_stream().synchronize()
        device = self.original_device[layer_idx]
        return keys.to(device), values.to(device)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self._offloading:
            torch.cuda.current_stream().synchronize()
            self._prefetched.clear()
            beam_idx = beam_idx.cpu()
        super().reorder_cache(beam_idx)
        if self._offloading:
            self._keys = [t.pin_memory() for t in self._keys]
            self._values = [t.pin_memory() for t in self._values]

    def reserve(self, total_length: int) -> None:
        if self._offloading:
            torch.cuda.current_stream().synchronize()  # appends still copying into the buffers being grown
        super().reserve(total_length)

    def crop(self, max_length: int) -> None:
        self._prefetched.clear()
        super().crop(max_length)

    def reset(self) -> None:
        self._prefetched.clear()
        super().reset()

    def fork(self) -> "OffloadedCache":
        if self._offloading:
            torch.cuda.current_stream().synchronize()
        child = super().fork()
        child._prefetched, child.original_device = {}, list(self.original_device)
        return child
