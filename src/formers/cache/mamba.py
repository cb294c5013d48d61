"""MambaCache: the recurrent state of a Mamba model (no keys or values).

conv_states [L, B, intermediate_size, conv_kernel] hold the last `conv_kernel` inputs of each
layer's causal convolution; ssm_states [L, B, intermediate_size, state_size] the SSM state. A host
counter of the positions fed so far answers `get_seq_length` (the model advances it once per forward).

A state cannot forget one position, so rolling back (assisted decoding) restores a snapshot: the
cache keeps the checkpoints taken since the last `rewind` and returns to the newest one that does
not lie past the wanted length; the caller feeds the positions after it again.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import CacheError
from .base import Cache
from .static import mark_static


@dataclass
class MambaSnapshot:
    conv_states: torch.Tensor   # [L, B, I, K]
    ssm_states: torch.Tensor    # [L, B, I, N]
    seen: int                   # positions fed when it was taken


class MambaCache(Cache):
    """Arguments as transformers 4.45: `config` (intermediate_size, state_size, conv_kernel,
    num_hidden_layers), `batch_size` (or `max_batch_size`), `dtype`, `device`."""

    recurrent = True

    def __init__(self, config, batch_size: int | None = None, dtype: torch.dtype = torch.float16,
                 device: torch.device | str | None = None, max_batch_size: int | None = None) -> None:
        self.dtype = dtype
        self.batch_size = batch_size or max_batch_size
        if not self.batch_size:
            raise CacheError("MambaCache: pass `batch_size` (or `max_batch_size`), the number of rows it holds")
        self.intermediate_size = config.intermediate_size
        self.ssm_state_size = config.state_size
        self.conv_kernel_size = config.conv_kernel
        layers = config.num_hidden_layers
        self.conv_states = torch.zeros(layers, self.batch_size, self.intermediate_size, self.conv_kernel_size,
                                       device=device, dtype=dtype)
        self.ssm_states = torch.zeros(layers, self.batch_size, self.intermediate_size, self.ssm_state_size,
                                      device=device, dtype=dtype)
        mark_static(self.conv_states)
        mark_static(self.ssm_states)
        self._seen = 0
        self._checkpoints: list[MambaSnapshot] = []

    @property
    def device(self) -> torch.device:
        return self.ssm_states.device

    # --- what the mixer writes (4.45's methods) --------------------------------------------------
    def update_conv_state(self, layer_idx: int, new_conv_state: torch.Tensor,
                          cache_position: torch.LongTensor) -> torch.Tensor:
        """Shift layer `layer_idx`'s window left by one and write `new_conv_state` at the (clamped) positions."""
        state = self.conv_states[layer_idx].roll(shifts=-1, dims=-1)
        position = cache_position.clamp(0, self.conv_kernel_size - 1)
        state[:, :, position] = new_conv_state.to(state.device, state.dtype)
        self.conv_states[layer_idx].copy_(state)
        return self.conv_states[layer_idx]

    def update_ssm_state(self, layer_idx: int, new_ssm_state: torch.Tensor) -> torch.Tensor:
        self.ssm_states[layer_idx].copy_(new_ssm_state)
        return self.ssm_states[layer_idx]

    def advance(self, new_positions: int) -> None:
        """The model fed `new_positions` more positions through every layer."""
        self._seen += new_positions

    # --- the Cache protocol --------------------------------------------------------------------
    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        return self._seen

    def reset(self) -> None:
        """Zero the states in place (same addresses, so a compiled forward stays valid)."""
        self.conv_states.zero_()
        self.ssm_states.zero_()
        self._seen = 0
        self._checkpoints = []

    def crop(self, max_length: int) -> None:
        """Only a no-op crop is possible (nothing past `max_length` held); roll back with checkpoint/rewind."""
        max_length = self._seen + max_length if max_length < 0 else max_length
        if max_length < self._seen:
            raise CacheError(f"MambaCache.crop({max_length}): a state cache cannot forget positions "
                             f"(it holds {self._seen}); use snapshot()/restore() or checkpoint()/rewind()")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Rows <- rows[beam_idx], written in place (the row count stays)."""
        for states in (self.conv_states, self.ssm_states):
            states.copy_(states.index_select(1, beam_idx.to(states.device)))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._set_rows(lambda t: t[:, indices.to(t.device)])

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._set_rows(lambda t: t.repeat_interleave(repeats, dim=1))

    def _set_rows(self, fn) -> None:
        self.conv_states = mark_static(fn(self.conv_states).contiguous())
        self.ssm_states = mark_static(fn(self.ssm_states).contiguous())
        self.batch_size = self.ssm_states.shape[1]
        self._checkpoints = []

    # --- snapshots and rollback ---------------------------------------------------------------
    def snapshot(self) -> MambaSnapshot:
        return MambaSnapshot(self.conv_states.clone(), self.ssm_states.clone(), self._seen)

    def restore(self, snapshot: MambaSnapshot) -> None:
        if not isinstance(snapshot, MambaSnapshot):
            raise CacheError(f"MambaCache.restore: expected a MambaSnapshot from snapshot(), got "
                             f"{type(snapshot).__name__}")
        if snapshot.ssm_states.shape == self.ssm_states.shape:
            self.conv_states.copy_(snapshot.conv_states)
            self.ssm_states.copy_(snapshot.ssm_states)
        else:  # rows were selected since: take the snapshot's shape
            self.conv_states = mark_static(snapshot.conv_states.clone())
            self.ssm_states = mark_static(snapshot.ssm_states.clone())
            self.batch_size = self.ssm_states.shape[1]
        self._seen = snapshot.seen

    def checkpoint(self) -> None:
        self._checkpoints.append(self.snapshot())

    def rewind(self, length: int) -> int:
        if length < self._seen:
            usable = [c for c in self._checkpoints if c.seen <= length]
            if not usable:
                raise CacheError(f"MambaCache.rewind({length}): no checkpoint at or before position {length} "
                                 f"(call checkpoint() before feeding positions you may roll back)")
            self.restore(usable[-1])
        self._checkpoints = []
        return self._seen

    def copy(self) -> "MambaCache":
        child = type(self).__new__(type(self))
        child.__dict__.update(self.__dict__)
        child.conv_states = mark_static(self.conv_states.clone())
        child.ssm_states = mark_static(self.ssm_states.clone())
        child._checkpoints = list(self._checkpoints)
        return child

    def __deepcopy__(self, memo) -> "MambaCache":
        return self.copy()
