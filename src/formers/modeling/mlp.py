"""Feed-forward blocks."""
from __future__ import annotations

import torch
from torch import nn

from ..kernels.linear import linear_group
from .activations import get_activation
from .layers import Linear


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): the SwiGLU-style block of Llama, Mistral, Qwen2 and kin. `fused` keeps
    gate and up in one `gate_up_proj` [gate; up] (Phi3's checkpoint layout; one matmul instead of two)."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str, bias: bool = False,
                 fused: bool = False):
        super().__init__()
        self.fused = fused
        if fused:
            self.gate_up_proj = Linear(hidden_size, 2 * intermediate_size, bias=bias)
        else:
            self.gate_proj = Linear(hidden_size, intermediate_size, bias=bias)
            self.up_proj = Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = Linear(intermediate_size, hidden_size, bias=bias)
        self.act_fn = get_activation(hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = linear_group(x, (self.gate_proj, self.up_proj))  # one pass when decoding
        return self.down_proj(self.act_fn(gate) * up)


class MLP(nn.Module):
    """down(act(up(x))): the non-gated block of GPT-2, Phi, NeoX, Falcon, Bloom, Starcoder2, Nemotron and kin
    (checkpoints name the two projections differently; the family key maps rename them to these)."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str, bias: bool = True):
        super().__init__()
        self.up_proj = Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = Linear(intermediate_size, hidden_size, bias=bias)
        self.act_fn = get_activation(hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(x)))
