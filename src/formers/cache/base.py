"""The Cache protocol every cache class follows (transformers 4.45 `Cache` surface, plus the hooks the
shared decoder uses so it never needs to know which cache it holds).

What the model asks a cache, per forward (per group of layers with the same `layer_kind`):
  - `attention_key_length(T, layer_idx)`: how many key slots S attention will see;
  - `key_positions(cache_position, layer_idx)`: the absolute position held by each of those slots, or
    None when slot i simply holds position i and nothing past the newest one (the DynamicCache
    layout, which lets SDPA run with no mask at all when nothing is padded);
  - `attend(q, k, v, layer_idx, kwargs, mask, kernel)`: store the new keys/values and attend; the
    default is `update` followed by the model's kernel, a cache may attend in its own way.

Row operations (beam search, finished rows, assisted decoding) live here too, so generation never asks
which cache it holds: `reorder_cache`, `batch_select_indices`, `batch_repeat_interleave`, `reset`,
`reserve`, `snapshot`/`restore`, and the rollback pair `checkpoint`/`rewind`. Caches of keys/values
roll back by cropping; state caches (`recurrent = True`: Mamba) hold one running state that cannot
forget a position, so they restore a snapshot taken earlier and the caller feeds the rest again.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ..errors import CacheError

AttentionResult = tuple[torch.Tensor, torch.Tensor | None]  # output [B, H, T, D], weights or None
Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], AttentionResult]


class Cache:
    """Per-layer key/value storage that attention layers write through `update`.

    Subclasses implement `update` and `get_seq_length`; everything else has a default.
    """

    # --- the transformers surface ----------------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new keys/values [B, Hkv, T, D] of layer `layer_idx`; return all keys/values to attend to."""
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        """Number of positions already cached for `layer_idx`."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_seq_length()")

    def get_max_length(self) -> int | None:
        """Capacity in positions, or None when the cache grows (or slides) without bound."""
        return None

    def get_max_cache_shape(self) -> int | None:
        """Later transformers' name for `get_max_length` (the docs' multi-turn example uses it)."""
        return self.get_max_length()

    def get_usable_length(self, new_seq_length: int, layer_idx: int | None = 0) -> int:
        """Cached positions that remain usable when `new_seq_length` more arrive."""
        max_length = self.get_max_length()
        previous = self.get_seq_length(layer_idx)
        if max_length is not None and previous + new_seq_length > max_length:
            return max_length - new_seq_length
        return previous

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Rows <- rows[beam_idx] (beam search; the row count stays). Default: `batch_select_indices`."""
        self.batch_select_indices(beam_idx)

    def crop(self, max_length: int) -> None:
        """Keep the first `max_length` positions (negative: drop that many from the end)."""
        raise CacheError(f"{type(self).__name__} does not support crop()")

    def reset(self) -> None:
        """Forget every cached position but keep the storage (static caches stay at the same address)."""
        raise CacheError(f"{type(self).__name__} does not support reset()")

    # --- row operations and rollback (defaults; each cache overrides what it supports) ------------
    recurrent: bool = False
    """True for state caches: one running state per row instead of one entry per position, so a
    position cannot be cropped away and a padded column still changes the state."""

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows `indices` [N'] only (finished rows leave the batch)."""
        raise CacheError(f"{type(self).__name__} does not support batch_select_indices()")

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Each row repeated `repeats` times in place (beams and return sequences of a cached prompt)."""
        raise CacheError(f"{type(self).__name__} does not support batch_repeat_interleave()")

    def reserve(self, total_length: int) -> None:
        """Make room for `total_length` positions up front, where the cache grows (default: nothing to do)."""

    def snapshot(self) -> object:
        """An opaque copy of the current contents that `restore` brings back. Default: a full copy."""
        return self.copy()

    def restore(self, snapshot: object) -> None:
        """Return to the contents `snapshot()` captured (a snapshot can be restored more than once)."""
        if type(snapshot) is not type(self):
            raise CacheError(f"{type(self).__name__}.restore: expected a snapshot of this cache, "
                             f"got {type(snapshot).__name__}")
        self.__dict__.update(snapshot.copy().__dict__)

    def checkpoint(self) -> None:
        """Remember this point so `rewind` can come back to it (assisted decoding calls it before feeding
        candidates). Caches that crop can return anywhere and need nothing; state caches snapshot."""

    def rewind(self, length: int) -> int:
        """Forget positions from `length` on, as far as the cache can -> the positions it still holds
        (<= `length`; the caller feeds the rest again). Default: `crop`. State caches go back to their
        newest checkpoint at or before `length` and drop the checkpoints."""
        self.crop(length)
        return self.get_seq_length()

    @property
    def seen_tokens(self) -> int:
        return self.get_seq_length()

    # --- what the decoder asks ------------------------------------------------------------------
    def layer_kind(self, layer_idx: int) -> object:
        """Layers of equal kind share a key layout, hence a mask (HybridCache: sliding vs global)."""
        return None

    def attention_key_length(self, query_length: int, layer_idx: int = 0) -> int:
        """Length S of the key axis attention sees once `query_length` new positions are written."""
        return self.get_seq_length() + query_length

    def key_positions(self, cache_position: torch.Tensor, layer_idx: int = 0) -> torch.Tensor | None:
        """Absolute position [S] of each key slot attention sees after writing `cache_position` (negative:
        an empty slot). None: slot i holds position i, for i up to the newest position only."""
        return None

    def attend(self, query: torch.Tensor, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any], mask: torch.Tensor | None, kernel: Kernel) -> AttentionResult:
        """Store the new keys/values and run attention for layer `layer_idx`.

        query [B, H, T, D], keys/values [B, Hkv, T, D], mask [B, 1, T, S] or None; `kernel` is the model's
        attention function over (query, all keys, all values, mask).
        """
        keys, values = self.update(key_states, value_states, layer_idx, cache_kwargs)
        return kernel(query, keys, values, mask)

    def ensure_capacity(self, total_length: int) -> None:
        """Raise CacheError when `total_length` positions cannot be held correctly (checked before a
        generate() call starts rather than failing deep inside a step)."""

    # --- prefix reuse and accounting (beyond 4.45) ------------------------------------------------
    def copy(self) -> "Cache":
        """An independent cache with the same contents (prefill a prefix once, then fork per prompt)."""
        return copy.deepcopy(self)

    def fork(self) -> "Cache":
        """Same as `copy()`; subclasses may share storage until one side writes."""
        return self.copy()

    def get_memory_footprint(self) -> int:
        """Bytes held by this cache's tensors (each storage counted once)."""
        seen: set[int] = set()
        total = 0
        for tensor in _tensors_in(vars(self)):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen and storage.nbytes() > 0:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        return total


def _tensors_in(value: Any):
    """Every tensor reachable through dicts, lists, tuples and nested caches."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, Cache):
        yield from _tensors_in(vars(value))
