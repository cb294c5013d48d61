"""Mamba (and FalconMamba, a flag away): attention-free blocks of a selective state-space mixer.

Per block: h = x + mixer(rms_norm(x)) (the residual in float32 when `residual_in_fp32`). The mixer
projects to x | gate, runs a causal depthwise conv of width `conv_kernel` over x, projects x to
dt (low rank, then `dt_proj`) | B | C (FalconMamba RMS-normalises the three without a weight), scans
(`modeling/selective_scan.py`: chunked parallel scan for prompts, the recurrence for one token), adds
the D skip, gates with act(gate) and projects out. Module and checkpoint names are 4.45's:
backbone.embeddings, backbone.layers.N.{norm, mixer.{in_proj, conv1d, x_proj, dt_proj, A_log, D,
out_proj}}, backbone.norm_f, lm_head.

Padding, as 4.45's reference path: a prompt's `attention_mask` zeroes the padded positions of x before
and after the conv (so a left-padded row keeps a zero state until its first token); later single tokens
are real. The cache (`MambaCache`) holds each layer's last `conv_kernel` conv inputs and SSM state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...cache.mamba import MambaCache
from ...modeling.activations import get_activation
from ...modeling.norms import RMSNorm
from ...modeling.selective_scan import selective_scan, selective_step
from ...modeling.state_space import StateSpaceForCausalLM, StateSpaceModel
from ...modeling_outputs import ModelOutput
from ...modeling_utils import PreTrainedModel
from .configuration_mamba import MambaConfig


@dataclass(eq=False, repr=True)
class MambaOutput(ModelOutput):
    last_hidden_state: torch.FloatTensor | None = None
    cache_params: MambaCache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass(eq=False, repr=True)
class MambaCausalLMOutput(ModelOutput):
    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache_params: MambaCache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


MambaRMSNorm = RMSNorm  # 4.45's name: fp32 statistics, cast back before the weight


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Weightless RMS normalisation over the last axis, in float32, cast back (FalconMamba's B/C/dt)."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class MambaMixer(nn.Module):
    """hidden [B, T, hidden] -> [B, T, hidden]; reads and advances layer `layer_idx`'s state in the cache.
    `rms_eps`: None for Mamba; FalconMamba's `mixer_rms_eps` normalises B, C and dt."""

    def __init__(self, config: MambaConfig, layer_idx: int, rms_eps: float | None = None):
        super().__init__()
        self.layer_idx, self.rms_eps = layer_idx, rms_eps
        self.intermediate_size, self.ssm_state_size = config.intermediate_size, config.state_size
        self.time_step_rank = int(config.time_step_rank)
        self.act = get_activation(config.hidden_act)
        self.in_proj = nn.Linear(config.hidden_size, 2 * self.intermediate_size, bias=config.use_bias)
        self.conv1d = nn.Conv1d(self.intermediate_size, self.intermediate_size, config.conv_kernel,
                                bias=config.use_conv_bias, groups=self.intermediate_size, padding=config.conv_kernel - 1)
        self.x_proj = nn.Linear(self.intermediate_size, self.time_step_rank + 2 * self.ssm_state_size, bias=False)
        self.dt_proj = nn.Linear(self.time_step_rank, self.intermediate_size, bias=True)
        A = torch.arange(1, self.ssm_state_size + 1, dtype=torch.float32).expand(self.intermediate_size, -1)
        self.A_log = nn.Parameter(torch.log(A).contiguous())
        self.D = nn.Parameter(torch.ones(self.intermediate_size))
        self.out_proj = nn.Linear(self.intermediate_size, config.hidden_size, bias=config.use_bias)

    def forward(self, hidden_states: torch.Tensor, cache: MambaCache | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """`mask` [B, T] or None; `cache` None (no state kept), fresh (a prompt) or holding a state."""
        length = hidden_states.shape[1]
        x, gate = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)     # [B, I, T] each
        if mask is not None:
            x = x * mask.unsqueeze(1)
        continuing = cache is not None and cache.get_seq_length() > 0
        x = self._convolve(x, cache, continuing)
        if mask is not None:
            x = x * mask.unsqueeze(1)
        time_step, B, C = self.x_proj(x.transpose(1, 2)).split(
            [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=-1)
        time_step, B, C = self.normalize_ssm_inputs(time_step, B, C)
        dt = F.softplus(self.dt_proj(time_step)).transpose(1, 2)                # [B, I, T]
        A = -torch.exp(self.A_log.float())                                      # [I, N]
        if continuing and length == 1:
            y, state = selective_step(x, dt, A, B, C, cache.ssm_states[self.layer_idx])
        else:
            y, state = selective_scan(x, dt, A, B, C, cache.ssm_states[self.layer_idx] if continuing else None)
        if cache is not None:
            cache.ssm_states[self.layer_idx].copy_(state)
        y = (y + x * self.D[None, :, None]) * self.act(gate)
        return self.out_proj(y.transpose(1, 2))

    def normalize_ssm_inputs(self, time_step: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(low-rank dt, B, C) before dt_proj and the scan: as they are for Mamba, RMS-normalised without a
        weight for FalconMamba; Jamba's mixer overrides it with weighted norms."""
        if self.rms_eps is None:
            return time_step, B, C
        return _rms(time_step, self.rms_eps), _rms(B, self.rms_eps), _rms(C, self.rms_eps)

    def _convolve(self, x: torch.Tensor, cache: MambaCache | None, continuing: bool) -> torch.Tensor:
        """act(causal depthwise conv) of x [B, I, T], after the cached window when continuing; stores the
        last `conv_kernel` inputs in the cache."""
        length, kernel = x.shape[-1], self.conv1d.kernel_size[0]
        if not continuing:
            if cache is not None:
                cache.conv_states[self.layer_idx].copy_(F.pad(x, (kernel - length, 0)))  # crops when longer
            return self.act(self.conv1d(x)[..., :length])
        states = cache.conv_states[self.layer_idx]
        window = torch.cat([states.to(x.dtype), x], dim=-1)                    # [B, I, K + T]
        states.copy_(window[..., -kernel:])
        if length == 1:  # decoding: the window times the kernel, as 4.45's recurrence
            out = torch.sum(states * self.conv1d.weight[:, 0, :], dim=-1)
            out = out + self.conv1d.bias if self.conv1d.bias is not None else out
            return self.act(out).to(x.dtype).unsqueeze(-1)
        return self.act(F.conv1d(window[..., 1:], self.conv1d.weight, self.conv1d.bias, groups=x.shape[1]))


class MambaPreTrainedModel(PreTrainedModel):
    config_class = MambaConfig
    base_model_prefix = "backbone"
    _no_split_modules = ["StateSpaceBlock"]
    supports_gradient_checkpointing = True
    _is_stateful = True

    def _init_weights(self, module: nn.Module) -> None:
        """As 4.45: dt_proj uniform/constant at time_step_rank^-0.5 * scale, its bias softplus^-1 of a
        log-uniform dt in [time_step_min, time_step_max] (floored); other biases zero; embeddings normal."""
        config = self.config
        if isinstance(module, MambaMixer):
            std = config.time_step_rank ** -0.5 * config.time_step_scale
            low, high = math.log(config.time_step_min), math.log(config.time_step_max)
            dt = torch.exp(torch.rand(config.intermediate_size) * (high - low) + low).clamp(min=config.time_step_floor)
            with torch.no_grad():
                if config.time_step_init_scheme == "constant":
                    module.dt_proj.weight.fill_(std)
                else:
                    module.dt_proj.weight.uniform_(-std, std)
                module.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
                for linear in (module.in_proj, module.out_proj):
                    if linear.bias is not None:
                        linear.bias.zero_()
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=config.initializer_range)


class MambaModel(MambaPreTrainedModel, StateSpaceModel):
    """input ids [B, T] -> final hidden states [B, T, hidden] (the body is `modeling/state_space.py`)."""

    cache_class = MambaCache
    output_class = MambaOutput

    @classmethod
    def make_mixer(cls, config: MambaConfig, layer_idx: int) -> MambaMixer:
        return MambaMixer(config, layer_idx)


class MambaForCausalLM(MambaPreTrainedModel, StateSpaceForCausalLM):
    """MambaModel + LM head (tied to the embeddings by default): ids [B, T] -> logits [B, T, V] (float32)."""

    base_model_class = MambaModel
    output_class = MambaCausalLMOutput
