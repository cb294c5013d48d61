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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...cache.mamba import MambaCache
from ...errors import GenerationError
from ...modeling.activations import get_activation
from ...modeling.decoder import causal_lm_loss
from ...modeling.norms import RMSNorm
from ...modeling.selective_scan import selective_scan, selective_step
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
        dtype, length = hidden_states.dtype, hidden_states.shape[1]
        x, gate = self.in_proj(hidden_states).transpose(1, 2).chunk(2, dim=1)     # [B, I, T] each
        if mask is not None:
            x = x * mask.unsqueeze(1)
        continuing = cache is not None and cache.get_seq_length() > 0
        x = self._convolve(x, cache, continuing)
        if mask is not None:
            x = x * mask.unsqueeze(1)
        time_step, B, C = self.x_proj(x.transpose(1, 2)).split(
            [self.time_step_rank, self.ssm_state_size, self.ssm_state_size], dim=-1)
        if self.rms_eps is not None:
            B, C, time_step = _rms(B, self.rms_eps), _rms(C, self.rms_eps), _rms(time_step, self.rms_eps)
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


class MambaBlock(nn.Module):
    def __init__(self, config: MambaConfig, layer_idx: int, rms_eps: float | None = None):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = MambaRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mixer = MambaMixer(config, layer_idx, rms_eps)

    def forward(self, hidden_states, cache_params=None, mask=None) -> torch.Tensor:
        residual = hidden_states.float() if self.residual_in_fp32 else hidden_states
        return residual + self.mixer(self.norm(hidden_states.to(self.norm.weight.dtype)), cache_params, mask)


class MambaPreTrainedModel(PreTrainedModel):
    config_class = MambaConfig
    base_model_prefix = "backbone"
    _no_split_modules = ["MambaBlock"]
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


class MambaModel(MambaPreTrainedModel):
    """input ids [B, T] -> final hidden states [B, T, hidden]."""

    @classmethod
    def mixer_rms_eps(cls, config: MambaConfig) -> float | None:
        """Eps of the B/C/dt normalisation inside every mixer; None: none (FalconMamba overrides)."""
        return None

    def __init__(self, config: MambaConfig):
        super().__init__(config)
        eps = self.mixer_rms_eps(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([MambaBlock(config, idx, eps) for idx in range(config.num_hidden_layers)])
        self.norm_f = MambaRMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def forward(self, input_ids=None, inputs_embeds=None, cache_params: MambaCache | None = None,
                use_cache: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, cache_position=None, attention_mask=None,
                past_key_values: MambaCache | None = None, **kwargs: Any):
        """As 4.45. The cache is `cache_params` (or `past_key_values`, generate()'s name); it counts the
        positions it has seen, so `cache_position` is accepted and not needed. `attention_mask` may be
        wider than the input (generate()'s running mask): its last T columns are used."""
        if (input_ids is None) == (inputs_embeds is None):
            raise GenerationError(f"{type(self).__name__}.forward: pass exactly one of `input_ids` or `inputs_embeds`")
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = self.config.return_dict if return_dict is None else return_dict
        use_cache = (self.config.use_cache and not self.training) if use_cache is None else use_cache
        cache = cache_params if cache_params is not None else past_key_values
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if not use_cache:
            cache = None
        elif cache is None:
            cache = MambaCache(self.config, hidden.shape[0], dtype=hidden.dtype, device=hidden.device)
        length = hidden.shape[1]
        mask = attention_mask[:, -length:] if attention_mask is not None else None
        all_hidden = []
        for block in self.layers:
            if self.gradient_checkpointing and self.training:
                hidden = torch.utils.checkpoint.checkpoint(block, hidden, cache, mask, use_reentrant=False)
            else:
                hidden = block(hidden, cache, mask)
            all_hidden.append(hidden)
        if cache is not None:
            cache.advance(length)
        hidden = self.norm_f(hidden)
        hidden_states = tuple(all_hidden) + (hidden,) if output_hidden_states else None
        out = MambaOutput(last_hidden_state=hidden, cache_params=cache, hidden_states=hidden_states)
        return out if return_dict else out.to_tuple()


class MambaForCausalLM(MambaPreTrainedModel):
    """MambaModel + LM head (tied to the embeddings by default): ids [B, T] -> logits [B, T, V] (float32)."""

    base_model_class = MambaModel
    _tied_weights_keys = ["lm_head.weight"]

    @classmethod
    def can_generate(cls) -> bool:
        return True

    def __init__(self, config: MambaConfig):
        super().__init__(config)
        self.backbone = self.base_model_class(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.backbone.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.backbone.embeddings = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def make_generation_cache(self, batch_size: int, max_length: int, device: torch.device,
                              dtype: torch.dtype) -> MambaCache:
        """generate()'s cache: the recurrent state of `batch_size` rows (its size does not grow with length)."""
        return MambaCache(self.config, batch_size, dtype=dtype, device=device)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, cache_params: MambaCache | None = None,
                labels=None, output_hidden_states: bool | None = None, return_dict: bool | None = None,
                use_cache: bool | None = None, cache_position=None, past_key_values: MambaCache | None = None,
                num_logits_to_keep: int = 0, **kwargs: Any):
        """As 4.45; also takes the cache as `past_key_values` (generate()'s name) and `num_logits_to_keep`
        (0: logits of every position). Position ids and attention outputs do not apply and are ignored."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        base = self.backbone(input_ids=input_ids, inputs_embeds=inputs_embeds, cache_params=cache_params,
                             past_key_values=past_key_values, use_cache=use_cache,
                             output_hidden_states=output_hidden_states, return_dict=True, attention_mask=attention_mask)
        hidden = base.last_hidden_state[:, -num_logits_to_keep:]
        logits = self.lm_head(hidden.to(self.lm_head.weight.dtype)).float()
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        out = MambaCausalLMOutput(loss=loss, logits=logits, cache_params=base.cache_params,
                                  hidden_states=base.hidden_states)
        return out if return_dict else out.to_tuple()
