"""MambaCache: the recurrent state of a Mamba model (no keys or values).

conv_states [L, B, intermediate_size, conv_kernel] hold the last `conv_kernel` inputs of each
layer's causal convolution; ssm_states [L, B, intermediate_size, state_size] the SSM state.
"""
from __future__ import annotations

import torch

from .static import mark_static


class MambaCache:
    """Arguments as transformers 4.45: `config` (intermediate_size, state_size, conv_kernel,
    num_hidden_layers), `batch_size` (or `max_batch_size`), `dtype`, `device`."""

    def __init__(self, config, batch_size: int | None = None, dtype: torch.dtype = torch.float16,
                 device: torch.device | str | None = None, max_batch_size: int | None = None) -> None:
        self.dtype = dtype
        self.batch_size = batch_size or max_batch_size
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

    def reset(self) -> None:
        self.conv_states.zero_()
        self.ssm_states.zero_()
