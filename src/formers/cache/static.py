"""StaticCache: fixed-shape buffers [B, Hkv, max_cache_len, D] written in place at `cache_position`.

Shapes never change, so a decode step compiled with `fullgraph=True` (and CUDA graphs) is captured
once. Attention always sees all `max_cache_len` slots; slot i holds position i and the mask hides
slots past the newest position. The sequence length lives in a device scalar updated in the graph,
so nothing scans the buffers and nothing in a step reads a changing Python number (a recompile).
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import CacheError
from .base import Cache


def layer_windows(config) -> list[int | None]:
    """Each layer's attention window (None: global), as the family's config states it."""
    per_layer = getattr(type(config), "layer_sliding_window", None)
    if per_layer is None:  # a config outside formers' decoder families
        return [vars(config).get("sliding_window")] * config.num_hidden_layers
    return [config.layer_sliding_window(idx) for idx in range(config.num_hidden_layers)]


def sliding_window_of(config) -> int | None:
    """The model's sliding window (the largest any layer uses); None when every layer is global."""
    windows = [w for w in layer_windows(config) if w is not None]
    return max(windows) if windows else None


def attention_shape(config) -> tuple[int, int]:
    """(Hkv, D) of a decoder config; a tensor-parallel rank caches only its own KV heads (distributed/plan.py)."""
    return vars(config).get("_tp_local_kv_heads", config.num_key_value_heads), config.head_dim


def mark_static(tensor: torch.Tensor) -> torch.Tensor:
    """Tell torch.compile the tensor keeps its address, so CUDA graphs capture it instead of copying it.
    Only CUDA graphs care; on other devices the (slow to import) compiler is left alone."""
    if tensor.device.type == "cuda":
        torch._dynamo.mark_static_address(tensor)
    return tensor


def static_buffer(shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
    """Zeroed buffer whose address compiled graphs may bake in (empty slots must hold finite values)."""
    return mark_static(torch.zeros(shape, dtype=dtype, device=device))


class StaticCache(Cache):
    """Preallocated cache for `torch.compile`; reusable across calls through `reset()`.

    Args follow transformers 4.45: `config`, `batch_size` (or the older `max_batch_size`),
    `max_cache_len` (default `config.max_position_embeddings`), `device`, `dtype`, `layer_device_map`.
    """

    def __init__(self, config, batch_size: int | None = None, max_cache_len: int | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 max_batch_size: int | None = None,
                 layer_device_map: dict[int, torch.device | str | int] | None = None) -> None:
        self.batch_size = batch_size or max_batch_size
        if not self.batch_size:
            raise CacheError(f"{type(self).__name__}: pass `batch_size` (a positive int), got {self.batch_size!r}")
        self.max_cache_len = config.max_position_embeddings if max_cache_len is None else max_cache_len
        self.num_key_value_heads, self.head_dim = attention_shape(config)
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.key_cache: list[torch.Tensor] = []
        self.value_cache: list[torch.Tensor] = []
        for idx in range(config.num_hidden_layers):
            layer_device = layer_device_map[idx] if layer_device_map is not None else self.device
            shape = (self.batch_size, self.num_key_value_heads, self._layer_length(config, idx), self.head_dim)
            self.key_cache.append(self._new_layer_buffer(shape, idx, layer_device))
            self.value_cache.append(self._new_layer_buffer(shape, idx, layer_device))
        self._length = static_buffer((), torch.long, self.device)  # positions written so far
        self._slots = torch.arange(self.max_cache_len, device=self.device)  # slot i holds position i

    def _layer_length(self, config, layer_idx: int) -> int:
        """Slots of layer `layer_idx` (HybridCache gives its sliding layers fewer)."""
        return self.max_cache_len

    def _new_layer_buffer(self, shape: tuple[int, ...], layer_idx: int, device) -> torch.Tensor:
        """Storage of one layer's keys or values (OffloadedStaticCache puts most layers on the CPU)."""
        return static_buffer(shape, self.dtype, device)

    # --- protocol ---------------------------------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        positions = self._write_positions(key_states.shape[-2], layer_idx, cache_kwargs)
        keys, values = self.key_cache[layer_idx], self.value_cache[layer_idx]
        # .to: GPT-J rotates keys in float32 even in a bf16 model (4.45's static cache fails on that)
        keys.index_copy_(2, positions.to(keys.device), key_states.to(keys.dtype))
        values.index_copy_(2, positions.to(keys.device), value_states.to(values.dtype))
        return keys, values

    def _write_positions(self, new: int, layer_idx: int, cache_kwargs: dict[str, Any] | None) -> torch.Tensor:
        """The positions being written [T]; layer 0's call advances the length.

        Without `cache_position` the new states are appended after what is cached (one host read)."""
        positions = cache_kwargs.get("cache_position") if cache_kwargs else None
        if positions is None:
            start = int(self._length) - (layer_idx != 0) * new  # layer 0 already advanced the length
            positions = torch.arange(start, start + new, device=self.device)
        if layer_idx == 0:
            self._length.copy_(positions[-1] + 1)
        return positions

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        return int(self._length)

    def get_max_length(self) -> int | None:
        return self.max_cache_len

    def attention_key_length(self, query_length: int, layer_idx: int = 0) -> int:
        return self.max_cache_len

    def key_positions(self, cache_position: torch.Tensor, layer_idx: int = 0) -> torch.Tensor:
        return self._slots

    def ensure_capacity(self, total_length: int) -> None:
        if total_length > self.max_cache_len:
            raise CacheError(f"{type(self).__name__} holds max_cache_len={self.max_cache_len} positions but "
                             f"{total_length} are needed; build it with a larger `max_cache_len`")

    def reset(self) -> None:
        """Zero the buffers in place (their addresses stay the same, so compiled graphs stay valid)."""
        for keys, values in zip(self.key_cache, self.value_cache):
            keys.zero_()
            values.zero_()
        self._length.zero_()

    def crop(self, max_length: int) -> None:
        """Forget positions from `max_length` on (negative: drop that many from the end)."""
        length = self.get_seq_length()
        max_length = length + max_length if max_length < 0 else max_length
        if max_length < length:
            self._length.fill_(max_length)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        for store in (self.key_cache, self.value_cache):
            for buffer in store:
                buffer.copy_(buffer.index_select(0, beam_idx.to(buffer.device)))

    def copy(self) -> "StaticCache":
        child = type(self).__new__(type(self))
        child.__dict__.update(self.__dict__)
        child.key_cache = [static_clone(t) for t in self.key_cache]
        child.value_cache = [static_clone(t) for t in self.value_cache]
        child._length = static_clone(self._length)
        return child

    def __deepcopy__(self, memo) -> "StaticCache":
        return self.copy()

    # --- legacy-style access ------------------------------------------------------------------------
    def __getitem__(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.key_cache[layer_idx], self.value_cache[layer_idx]

    def __len__(self) -> int:
        return len(self.key_cache)


def static_clone(tensor: torch.Tensor) -> torch.Tensor:
    return mark_static(tensor.clone())
