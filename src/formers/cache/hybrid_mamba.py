"""HybridMambaAttentionDynamicCache: Jamba's cache (4.45's name and constructor), attention and Mamba layers
side by side.

Attention layers keep keys/values that grow with the sequence (a DynamicCache inside, one slot per attention
layer, so growth is chunked and rows can be cropped); Mamba layers keep their conv window [B, I, conv_kernel]
and SSM state [B, I, d_state] in `conv_states`/`ssm_states` (4.45's per-layer lists; the other kind's entries
are empty [B, 0] tensors, as 4.45 has them). A host counter of the positions fed answers `get_seq_length`;
the model advances it once per forward, after every layer has used it.

The Mamba states cannot forget a position, so the cache is `recurrent`: rolling back (assisted decoding,
decode()'s overshoot steps) returns to a checkpoint, which records the key length and clones the states
(the keys are cropped back, not copied).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import CacheError
from .base import Cache
from .dynamic import DynamicCache


@dataclass
class HybridMambaSnapshot:
    conv_states: list[torch.Tensor]
    ssm_states: list[torch.Tensor]
    seen: int                        # positions fed when it was taken
    keys: DynamicCache | None        # a copy of the keys/values (snapshot()); None: crop back (checkpoint())


class HybridMambaAttentionDynamicCache(Cache):
    """Arguments as transformers 4.45: a Jamba `config` (layers_block_type, hidden_size, mamba_expand,
    mamba_d_state, mamba_d_conv), `batch_size`, `dtype`, `device`."""

    recurrent = True

    def __init__(self, config, batch_size: int, dtype: torch.dtype = torch.float16,
                 device: torch.device | str | None = None) -> None:
        self.dtype = dtype
        self.layers_block_type = list(config.layers_block_type)
        self.transformer_layers = [i for i, kind in enumerate(self.layers_block_type) if kind == "attention"]
        self._slot = {layer: slot for slot, layer in enumerate(self.transformer_layers)}
        width = config.mamba_expand * config.hidden_size
        self.conv_states: list[torch.Tensor] = []
        self.ssm_states: list[torch.Tensor] = []
        for kind in self.layers_block_type:
            mamba = kind == "mamba"
            self.conv_states.append(torch.zeros((batch_size, width, config.mamba_d_conv) if mamba else (batch_size, 0),
                                                device=device, dtype=dtype))
            self.ssm_states.append(torch.zeros((batch_size, width, config.mamba_d_state) if mamba else (batch_size, 0),
                                               device=device, dtype=dtype))
        self._keys = DynamicCache()
        self._seen = 0
        self._checkpoints: list[HybridMambaSnapshot] = []

    @property
    def batch_size(self) -> int:
        return self.ssm_states[0].shape[0] if self.ssm_states else 0

    @property
    def has_previous_state(self) -> bool:
        """4.45's flag: the Mamba layers hold a state to continue from."""
        return self._seen > 0

    @property
    def key_cache(self) -> list[torch.Tensor]:
        """Per layer: the cached keys [B, Hkv, S, D] of an attention layer, an empty tensor otherwise."""
        return self._per_layer(self._keys.key_cache)

    @property
    def value_cache(self) -> list[torch.Tensor]:
        return self._per_layer(self._keys.value_cache)

    def _per_layer(self, stored: list[torch.Tensor]) -> list[torch.Tensor]:
        empty = [self.conv_states[i].new_zeros(self.batch_size, 0) for i in range(len(self.layers_block_type))]
        for layer, slot in self._slot.items():
            if slot < len(stored):
                empty[layer] = stored[slot]
        return empty

    # --- what the layers write ----------------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               cache_kwargs: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if layer_idx not in self._slot:
            raise CacheError(f"HybridMambaAttentionDynamicCache.update: layer {layer_idx} is a "
                             f"{self.layers_block_type[layer_idx]!r} layer; keys are kept for attention layers "
                             f"{self.transformer_layers} only")
        return self._keys.update(key_states, value_states, self._slot[layer_idx], cache_kwargs)

    def advance(self, new_positions: int) -> None:
        """The model fed `new_positions` more positions through every layer."""
        self._seen += new_positions

    # --- the Cache protocol --------------------------------------------------------------------
    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        return self._seen

    def reserve(self, total_length: int) -> None:
        self._keys.reserve(total_length)

    def reset(self) -> None:
        """Zero the states in place and forget the keys (their buffers stay allocated)."""
        for states in (self.conv_states, self.ssm_states):
            for state in states:
                state.zero_()
        self._keys.reset()
        self._seen = 0
        self._checkpoints = []

    def crop(self, max_length: int) -> None:
        """Only a no-op crop is possible (the Mamba states cannot forget); roll back with checkpoint/rewind."""
        max_length = self._seen + max_length if max_length < 0 else max_length
        if max_length < self._seen:
            raise CacheError(f"HybridMambaAttentionDynamicCache.crop({max_length}): its Mamba states cannot forget "
                             f"positions (it holds {self._seen}); use snapshot()/restore() or checkpoint()/rewind()")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._keys.reorder_cache(beam_idx)
        self._map_states(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._keys.batch_select_indices(indices)
        self._map_states(lambda t: t[indices.to(t.device)])

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._keys.batch_repeat_interleave(repeats)
        self._map_states(lambda t: t.repeat_interleave(repeats, dim=0))

    def _map_states(self, fn) -> None:
        """Apply a row operation to every state; the rows change, so earlier checkpoints no longer apply."""
        self.conv_states = [fn(t).contiguous() for t in self.conv_states]
        self.ssm_states = [fn(t).contiguous() for t in self.ssm_states]
        self._checkpoints = []

    def to_legacy_cache(self):
        raise CacheError("HybridMambaAttentionDynamicCache has no legacy tuple form (as in transformers 4.45)")

    @classmethod
    def from_legacy_cache(cls, past_key_values=None):
        raise CacheError("HybridMambaAttentionDynamicCache has no legacy tuple form (as in transformers 4.45)")

    # --- snapshots and rollback -----------------------------------------------------------------
    def _take(self, with_keys: bool) -> HybridMambaSnapshot:
        return HybridMambaSnapshot([t.clone() for t in self.conv_states], [t.clone() for t in self.ssm_states],
                                   self._seen, self._keys.copy() if with_keys else None)

    def snapshot(self) -> HybridMambaSnapshot:
        return self._take(with_keys=True)

    def restore(self, snapshot: HybridMambaSnapshot) -> None:
        if not isinstance(snapshot, HybridMambaSnapshot):
            raise CacheError(f"HybridMambaAttentionDynamicCache.restore: expected a HybridMambaSnapshot from "
                             f"snapshot(), got {type(snapshot).__name__}")
        if snapshot.keys is not None:
            self._keys = snapshot.keys.copy()
        else:
            self._keys.crop(snapshot.seen)
        self.conv_states = [t.clone() for t in snapshot.conv_states]
        self.ssm_states = [t.clone() for t in snapshot.ssm_states]
        self._seen = snapshot.seen

    def checkpoint(self) -> None:
        self._checkpoints.append(self._take(with_keys=False))

    def rewind(self, length: int) -> int:
        if length < self._seen:
            usable = [c for c in self._checkpoints if c.seen <= length]
            if not usable:
                raise CacheError(f"HybridMambaAttentionDynamicCache.rewind({length}): no checkpoint at or before "
                                 f"position {length} (call checkpoint() before feeding positions you may roll back)")
            self.restore(usable[-1])
        self._checkpoints = []
        return self._seen

    def copy(self) -> HybridMambaAttentionDynamicCache:
        child = type(self).__new__(type(self))
        child.__dict__.update(self.__dict__)
        child._keys = self._keys.copy()
        child.conv_states = [t.clone() for t in self.conv_states]
        child.ssm_states = [t.clone() for t in self.ssm_states]
        child._checkpoints = list(self._checkpoints)
        return child

    def __deepcopy__(self, memo) -> HybridMambaAttentionDynamicCache:
        return self.copy()
