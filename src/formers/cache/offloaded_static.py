"""OffloadedStaticCache: a StaticCache whose layers (all but the first) live in pinned CPU memory.

On CUDA, two device buffers alternate: while layer i attends from one, layer i+1 is copied into the
other on a side stream (which first waits for the work that last read that buffer). New tokens are
written to both the device buffer and the CPU copy, so nothing is ever copied back whole.

Without CUDA there is nothing to offload to: it behaves exactly as StaticCache on its device.
"""
from __future__ import annotations

from typing import Any

import torch

from .static import StaticCache, static_buffer


class OffloadedStaticCache(StaticCache):
    """Arguments as transformers 4.45 (`config, max_batch_size, max_cache_len, device, dtype,
    offload_device`); `batch_size` and `layer_device_map` are accepted as generate() passes them."""

    def __init__(self, config, max_batch_size: int | None = None, max_cache_len: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 offload_device: torch.device | str = "cpu", batch_size: int | None = None,
                 layer_device_map: dict | None = None) -> None:
        self.offload_device = torch.device(offload_device)
        device = torch.device(device) if device is not None else torch.device("cpu")
        self._offloading = device.type == "cuda" and self.offload_device != device
        self._compute_device = device
        super().__init__(config, batch_size or max_batch_size, max_cache_len, device, dtype or torch.float32)
        self.max_batch_size = self.batch_size
        self._seen_tokens = 0  # host count of appended positions (where CPU copies are written)
        if self._offloading:
            shape = self.key_cache[0].shape
            self._device_keys = [static_buffer(shape, self.dtype, device) for _ in range(2)]
            self._device_values = [static_buffer(shape, self.dtype, device) for _ in range(2)]
            self._prefetch_stream = torch.cuda.Stream(device)

    def _new_layer_buffer(self, shape: tuple[int, ...], layer_idx: int, device) -> torch.Tensor:
        if not self._offloading or layer_idx == 0:  # the first layer always stays on the device
            return static_buffer(shape, self.dtype, self._compute_device)
        return torch.zeros(shape, dtype=self.dtype, device=self.offload_device, pin_memory=True)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx == 0:
            self._seen_tokens += key_states.shape[-2]
        if not self._offloading:
            return super().update(key_states, value_states, layer_idx, cache_kwargs)
        positions = self._write_positions(key_states.shape[-2], layer_idx, cache_kwargs)
        if layer_idx == 0:
            keys, values = self.key_cache[0], self.value_cache[0]
        else:
            torch.cuda.current_stream().wait_stream(self._prefetch_stream)
            keys, values = self._device_keys[layer_idx & 1], self._device_values[layer_idx & 1]
        self._prefetch(layer_idx + 1)
        keys.index_copy_(2, positions, key_states)
        values.index_copy_(2, positions, value_states)
        if layer_idx != 0:  # keep the CPU copy current: append the new positions only
            start = self._seen_tokens - key_states.shape[-2]
            self.key_cache[layer_idx].narrow(2, start, key_states.shape[-2]).copy_(key_states, non_blocking=True)
            self.value_cache[layer_idx].narrow(2, start, key_states.shape[-2]).copy_(value_states,
                                                                                     non_blocking=True)
        return keys, values

    def _prefetch(self, layer_idx: int) -> None:
        if layer_idx >= len(self.key_cache):
            return
        stream = self._prefetch_stream
        stream.wait_stream(torch.cuda.current_stream())  # earlier reads of the buffer and CPU-copy writes
        with torch.cuda.stream(stream):
            self._device_keys[layer_idx & 1].copy_(self.key_cache[layer_idx], non_blocking=True)
            self._device_values[layer_idx & 1].copy_(self.value_cache[layer_idx], non_blocking=True)

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        return self._seen_tokens

    def reset(self) -> None:
        if self._offloading:
            torch.cuda.current_stream().synchronize()
        super().reset()
        self._seen_tokens = 0

    def crop(self, max_length: int) -> None:
        super().crop(max_length)
        self._seen_tokens = min(self._seen_tokens, max_length if max_length >= 0 else self._seen_tokens + max_length)
