"""Mamba2Cache: the recurrent state of a Mamba-2 model (no keys or values), under the Cache protocol.

conv_states [L, B, conv_dim, conv_kernel] hold each layer's last `conv_kernel` inputs of the causal
convolution over x | B | C (newest last); ssm_states [L, B, num_heads, head_dim, state_size] the
multi-head SSM state. `conv_states[i]` / `ssm_states[i]` index one layer as 4.45's per-layer dicts do.

Only the shapes differ from Mamba's state cache: the row operations (beams, finished rows), reset,
snapshots and the checkpoint/rewind rollback of assisted decoding are MambaCache's.
"""
from __future__ import annotations

import torch

from .mamba import MambaCache
from .static import mark_static


class Mamba2Cache(MambaCache):
    """Arguments as transformers 4.45: `config` (a Mamba2Config), `batch_size`, `dtype`, `device`."""

    def __init__(self, config, batch_size: int, dtype: torch.dtype = torch.float16,
                 device: torch.device | str | None = None) -> None:
        self.dtype = dtype
        self.batch_size = batch_size
        self.conv_kernel_size = config.conv_kernel
        self.intermediate_size = int(config.expand * config.hidden_size)
        self.ssm_state_size = config.state_size
        conv_dim = self.intermediate_size + 2 * config.n_groups * config.state_size
        layers = config.num_hidden_layers
        self.conv_states = mark_static(torch.zeros(layers, batch_size, conv_dim, config.conv_kernel,
                                                   device=device, dtype=dtype))
        self.ssm_states = mark_static(torch.zeros(layers, batch_size, config.num_heads, config.head_dim,
                                                  config.state_size, device=device, dtype=dtype))
        self._seen = 0
        self._checkpoints = []

    @property
    def seqlen_offset(self) -> int:
        """4.45's name for the number of positions fed so far."""
        return self.get_seq_length()

    @seqlen_offset.setter
    def seqlen_offset(self, value: int) -> None:
        self._seen = value
