"""The Cache protocol every cache class follows (transformers 4.45 `Cache` surface)."""
from __future__ import annotations

from typing import Any

import torch


class Cache:
    """Per-layer key/value storage that attention layers write through `update`.

    Subclasses implement `update` and `get_seq_length`; the rest has defaults matching
    transformers 4.45.
    """

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new keys/values [B, Hkv, T, D] of layer `layer_idx`; return all keys/values to attend to."""
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        """Number of positions already cached for `layer_idx`."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_seq_length()")

    def get_max_length(self) -> int | None:
        """Capacity in positions, or None when the cache grows without bound."""
        return None

    def get_usable_length(self, new_seq_length: int, layer_idx: int | None = 0) -> int:
        """Cached positions that remain usable when `new_seq_length` more arrive."""
        max_length = self.get_max_length()
        previous = self.get_seq_length(layer_idx)
        if max_length is not None and previous + new_seq_length > max_length:
            return max_length - new_seq_length
        return previous

    def attention_key_length(self, query_length: int) -> int:
        """Length S of the key axis attention sees once `query_length` new positions are written."""
        return self.get_seq_length() + query_length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Reorder the batch axis (beam search)."""
        raise NotImplementedError(f"{type(self).__name__} does not support reorder_cache()")

    @property
    def seen_tokens(self) -> int:
        return self.get_seq_length()
