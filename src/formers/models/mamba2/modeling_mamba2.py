"""Mamba-2 (and Codestral Mamba): attention-free blocks of a multi-head state-space mixer (SSD).

Per block: h = x + mixer(rms_norm(x)) (the residual in float32 when `residual_in_fp32`). The mixer
projects to gate z | conv input (x | B | C) | dt, runs a causal depthwise conv over x|B|C, then the SSM
(`modeling/ssd.py`: chunked scan for prompts, one-step recurrence for decoding; head h reads group
h // (num_heads / n_groups)), adds the D skip, normalises y * silu(z) (gated RMSNorm over the full
width, as 4.45) and projects out. The body around the mixer (embeddings, blocks, final norm, LM head,
cache handling) is `modeling/state_space.py`'s; module and checkpoint names are 4.45's.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...cache.mamba2 import Mamba2Cache
from ...modeling.activations import get_activation
from ...modeling.layers import Linear
from ...modeling.norms import RMSNorm
from ...modeling.ssd import ssd_chunked, ssd_step
from ...modeling.state_space import (
    StateSpaceBlock,
    StateSpaceForCausalLM,
    StateSpaceModel,
)
from ...modeling_outputs import ModelOutput
from ...modeling_utils import PreTrainedModel
from .configuration_mamba2 import Mamba2Config


@dataclass(eq=False, repr=True)
class Mamba2Output(ModelOutput):
    last_hidden_state: torch.FloatTensor | None = None
    cache_params: Mamba2Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass(eq=False, repr=True)
class Mamba2CausalLMOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache_params: Mamba2Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


Mamba2RMSNorm = RMSNorm  # 4.45's names: the block and final norms (fp32 compute, cast before the weight), the block
Mamba2Block = StateSpaceBlock


class MambaRMSNormGated(RMSNorm):
    """RMSNorm of y * silu(gate), in float32, over the full width; cast back before the weight multiply."""

    def forward(self, hidden_states: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.float()
        if gate is not None:
            hidden_states = hidden_states * F.silu(gate.float())
        hidden_states = hidden_states * torch.rsqrt(hidden_states.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class Mamba2Mixer(nn.Module):
    """hidden [B, T, hidden] -> [B, T, hidden]; reads and advances the layer's state in `cache`."""

    def __init__(self, config: Mamba2Config, layer_idx: int):
        super().__init__()
        config.check_shapes()
        self.layer_idx = layer_idx
        self.num_heads, self.head_dim, self.n_groups = config.num_heads, config.head_dim, config.n_groups
        self.ssm_state_size, self.chunk_size = config.state_size, config.chunk_size
        self.intermediate_size, self.conv_dim = config.intermediate_size, config.conv_dim
        self.time_step_limit = tuple(config.time_step_limit)
        self.act = get_activation(config.hidden_act)
        self.conv1d = nn.Conv1d(self.conv_dim, self.conv_dim, config.conv_kernel, bias=config.use_conv_bias,
                                groups=self.conv_dim, padding=config.conv_kernel - 1)
        self.in_proj = Linear(config.hidden_size, self.intermediate_size + self.conv_dim + self.num_heads,
                                 bias=config.use_bias)
        self.dt_bias = nn.Parameter(torch.ones(self.num_heads))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.num_heads + 1, dtype=torch.float32)))
        self.norm = MambaRMSNormGated(self.intermediate_size, eps=config.layer_norm_epsilon)
        self.D = nn.Parameter(torch.ones(self.num_heads))
        self.out_proj = Linear(self.intermediate_size, config.hidden_size, bias=config.use_bias)

    def forward(self, hidden_states: torch.Tensor, cache: Mamba2Cache | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """`mask` [B, T] (None: nothing padded) zeroes padded positions before and after the convolution, so
        they neither reach a real token through the conv window nor enter the state. (4.45.2 zeroes the
        mixer's input instead, which leaves in_proj's bias in the conv window.)"""
        batch, length, _ = hidden_states.shape
        dtype = hidden_states.dtype
        gate, conv_input, dt = self.in_proj(hidden_states).split(
            [self.intermediate_size, self.conv_dim, self.num_heads], dim=-1)
        if mask is not None:
            conv_input = conv_input * mask[:, :, None].to(dtype)
        continuing = cache is not None and cache.get_seq_length() > 0
        conv_out = self.act(self._convolve(conv_input, cache, continuing))
        if mask is not None:
            conv_out = conv_out * mask[:, :, None].to(conv_out.dtype)
        x, B, C = conv_out.split([self.intermediate_size, self.n_groups * self.ssm_state_size,
                                  self.n_groups * self.ssm_state_size], dim=-1)
        x = x.reshape(batch, length, self.num_heads, self.head_dim).float()
        B = B.reshape(batch, length, self.n_groups, self.ssm_state_size).float()
        C = C.reshape(batch, length, self.n_groups, self.ssm_state_size).float()
        dt = F.softplus((dt + self.dt_bias).float())
        if self.time_step_limit != (0.0, float("inf")):
            dt = dt.clamp(*self.time_step_limit)
        A = -torch.exp(self.A_log.float())
        if continuing and length == 1:  # decoding: the single-step recurrence
            y, state = ssd_step(cache.ssm_states[self.layer_idx].float(), x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0])
            y = y[:, None]
        else:
            initial = cache.ssm_states[self.layer_idx].float() if continuing else None
            y, state = ssd_chunked(x, dt, A, B, C, self.chunk_size, initial)
        if cache is not None:
            cache.ssm_states[self.layer_idx].copy_(state)
        y = y + x * self.D.float()[:, None]
        y = self.norm(y.reshape(batch, length, self.intermediate_size), gate)
        return self.out_proj(y.to(dtype))

    def _convolve(self, conv_input: torch.Tensor, cache: Mamba2Cache | None, continuing: bool) -> torch.Tensor:
        """Causal depthwise conv over time of conv_input [B, T, conv_dim] (after the cached window when
        continuing); stores the last `conv_kernel` inputs in the cache."""
        length, kernel = conv_input.shape[1], self.conv1d.kernel_size[0]
        sequence = conv_input.transpose(1, 2)  # [B, conv_dim, T]
        if continuing:
            window = torch.cat([cache.conv_states[self.layer_idx].to(sequence.dtype), sequence], dim=-1)
            cache.conv_states[self.layer_idx].copy_(window[..., -kernel:])
            if length == 1:  # one window: a weighted sum, no convolution call (4.45's arithmetic)
                out = (window[..., 1:] * self.conv1d.weight[:, 0]).sum(-1)
                return (out if self.conv1d.bias is None else out + self.conv1d.bias)[:, None]
            out = F.conv1d(window[..., 1:], self.conv1d.weight, self.conv1d.bias, groups=self.conv_dim)
            return out.transpose(1, 2)
        if cache is not None:
            cache.conv_states[self.layer_idx].copy_(F.pad(sequence, (kernel - length, 0)))  # crops when longer
        return self.conv1d(sequence)[..., :length].transpose(1, 2)


class _LegacyEmbeddingName:
    """As 4.45's load hook: a checkpoint naming the embedding `embedding` (mamba_ssm's name) loads as
    `embeddings`; saving writes 4.45's names unchanged."""

    def to_model(self, tensors, config):
        for key, tensor in tensors:
            yield re.sub(r"(^|\.)embedding\.weight$", r"\1embeddings.weight", key), tensor

    def to_checkpoint(self, state, config):
        return state


class Mamba2PreTrainedModel(PreTrainedModel):
    config_class = Mamba2Config
    checkpoint_keys = _LegacyEmbeddingName()
    base_model_prefix = "backbone"
    _no_split_modules = ["Mamba2Block"]
    supports_gradient_checkpointing = True
    _is_stateful = True

    def _init_weights(self, module: nn.Module) -> None:
        """As 4.45: dt_bias = softplus^-1(dt) for dt log-uniform in [time_step_min, time_step_max] (floored),
        A_log = log(1..H), D = 1, embeddings N(0, initializer_range), linear biases zero."""
        config = self.config
        if isinstance(module, Mamba2Mixer):
            low, high = math.log(config.time_step_min), math.log(config.time_step_max)
            dt = torch.exp(torch.rand(config.num_heads) * (high - low) + low).clamp(min=config.time_step_floor)
            with torch.no_grad():
                module.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
                module.A_log.copy_(torch.log(torch.arange(1, config.num_heads + 1, dtype=torch.float32)))
                module.D.fill_(1.0)
        elif isinstance(module, (nn.Linear, nn.Conv1d)):
            module.reset_parameters()
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=config.initializer_range)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)


class Mamba2Model(StateSpaceModel, Mamba2PreTrainedModel):
    """input ids [B, T] -> final hidden states [B, T, hidden] (forward: modeling/state_space.py)."""

    cache_class = Mamba2Cache
    output_class = Mamba2Output

    @classmethod
    def make_mixer(cls, config: Mamba2Config, layer_idx: int) -> Mamba2Mixer:
        return Mamba2Mixer(config, layer_idx)


class Mamba2ForCausalLM(StateSpaceForCausalLM, Mamba2PreTrainedModel):
    """Mamba2Model + LM head (untied unless the config ties it): ids [B, T] -> logits [B, T, V] (float32)."""

    base_model_class = Mamba2Model
    output_class = Mamba2CausalLMOutput
