"""Mamba-2 (and Codestral Mamba): attention-free blocks of a multi-head state-space mixer (SSD).

Per block: h = x + mixer(rms_norm(x)) (the residual in float32 when `residual_in_fp32`). The mixer
projects to gate z | conv input (x | B | C) | dt, runs a causal depthwise conv over x|B|C, then the SSM
(`modeling/ssd.py`: chunked scan for prompts, one-step recurrence for decoding; head h reads group
h // (num_heads / n_groups)), adds the D skip, normalises y * silu(z) (gated RMSNorm over the full
width, as 4.45) and projects out. Module and checkpoint names are 4.45's: backbone.embeddings,
backbone.layers.N.{norm, mixer.*}, backbone.norm_f, lm_head.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...cache.mamba2 import Mamba2Cache
from ...errors import GenerationError
from ...modeling.activations import get_activation
from ...modeling.decoder import causal_lm_loss
from ...modeling.norms import RMSNorm
from ...modeling.ssd import ssd_chunked, ssd_step
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


Mamba2RMSNorm = RMSNorm  # 4.45's name for the block and final norms (fp32 compute, cast before the weight)


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
        self.in_proj = nn.Linear(config.hidden_size, self.intermediate_size + self.conv_dim + self.num_heads,
                                 bias=config.use_bias)
        self.dt_bias = nn.Parameter(torch.ones(self.num_heads))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, self.num_heads + 1, dtype=torch.float32)))
        self.norm = MambaRMSNormGated(self.intermediate_size, eps=config.layer_norm_epsilon)
        self.D = nn.Parameter(torch.ones(self.num_heads))
        self.out_proj = nn.Linear(self.intermediate_size, config.hidden_size, bias=config.use_bias)

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
            out = F.conv1d(window[..., 1:], self.conv1d.weight, self.conv1d.bias, groups=self.conv_dim)
            return out.transpose(1, 2)
        if cache is not None:
            cache.conv_states[self.layer_idx].copy_(F.pad(sequence, (kernel - length, 0)))  # crops when longer
        return self.conv1d(sequence)[..., :length].transpose(1, 2)


class Mamba2Block(nn.Module):
    def __init__(self, config: Mamba2Config, layer_idx: int):
        super().__init__()
        self.residual_in_fp32 = config.residual_in_fp32
        self.norm = Mamba2RMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.mixer = Mamba2Mixer(config, layer_idx)

    def forward(self, hidden_states, cache_params=None, mask=None) -> torch.Tensor:
        residual = hidden_states.float() if self.residual_in_fp32 else hidden_states
        return residual + self.mixer(self.norm(hidden_states.to(self.norm.weight.dtype)), cache_params, mask)


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


class Mamba2Model(Mamba2PreTrainedModel):
    """input ids [B, T] -> final hidden states [B, T, hidden]."""

    def __init__(self, config: Mamba2Config):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([Mamba2Block(config, idx) for idx in range(config.num_hidden_layers)])
        self.norm_f = Mamba2RMSNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        self.gradient_checkpointing = False

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def forward(self, input_ids=None, inputs_embeds=None, cache_params: Mamba2Cache | None = None,
                use_cache: bool | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, cache_position=None, attention_mask=None, **kwargs: Any):
        """`cache_position` is accepted and unused: the cache counts the positions it has seen."""
        if (input_ids is None) == (inputs_embeds is None):
            raise GenerationError("Mamba2Model.forward: pass exactly one of `input_ids` or `inputs_embeds`")
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = self.config.return_dict if return_dict is None else return_dict
        use_cache = (self.config.use_cache and not self.training) if use_cache is None else use_cache
        cache_params = cache_params if cache_params is not None else kwargs.get("past_key_values")
        hidden = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if not use_cache:
            cache_params = None
        elif cache_params is None:
            cache_params = Mamba2Cache(self.config, hidden.shape[0], dtype=hidden.dtype, device=hidden.device)
        length = hidden.shape[1]
        mask = attention_mask[:, -length:] if attention_mask is not None and length > 1 else None
        all_hidden = []
        for block in self.layers:
            if self.gradient_checkpointing and self.training:
                hidden = torch.utils.checkpoint.checkpoint(block, hidden, cache_params, mask, use_reentrant=False)
            else:
                hidden = block(hidden, cache_params, mask)
            all_hidden.append(hidden)
        if cache_params is not None:
            cache_params.advance(length)
        hidden = self.norm_f(hidden)
        hidden_states = tuple(all_hidden) + (hidden,) if output_hidden_states else None
        out = Mamba2Output(last_hidden_state=hidden, cache_params=cache_params, hidden_states=hidden_states)
        return out if return_dict else out.to_tuple()


class Mamba2ForCausalLM(Mamba2PreTrainedModel):
    """Mamba2Model + LM head (untied unless the config ties it): ids [B, T] -> logits [B, T, V] (float32)."""

    _tied_weights_keys = ["lm_head.weight"]

    @classmethod
    def can_generate(cls) -> bool:
        return True

    def __init__(self, config: Mamba2Config):
        super().__init__(config)
        self.backbone = Mamba2Model(config)
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
                              dtype: torch.dtype) -> Mamba2Cache:
        """generate()'s cache: the recurrent state, `batch_size` rows (its size does not grow with length)."""
        return Mamba2Cache(self.config, batch_size, dtype=dtype, device=device)

    def forward(self, input_ids=None, inputs_embeds=None, cache_params: Mamba2Cache | None = None, labels=None,
                output_hidden_states: bool | None = None, return_dict: bool | None = None,
                use_cache: bool | None = None, cache_position=None, attention_mask=None,
                num_logits_to_keep: int = 0, **kwargs: Any):
        """As 4.45; also takes the cache as `past_key_values` (generate()'s name) and `num_logits_to_keep`
        (0: logits of every position). Position ids and attention outputs do not apply and are ignored."""
        return_dict = self.config.return_dict if return_dict is None else return_dict
        base = self.backbone(input_ids=input_ids, inputs_embeds=inputs_embeds,
                             cache_params=cache_params if cache_params is not None else kwargs.get("past_key_values"),
                             use_cache=use_cache, output_hidden_states=output_hidden_states, return_dict=True,
                             attention_mask=attention_mask)
        hidden = base.last_hidden_state[:, -num_logits_to_keep:]
        logits = self.lm_head(hidden.to(self.lm_head.weight.dtype)).float()
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        out = Mamba2CausalLMOutput(loss=loss, logits=logits, cache_params=base.cache_params,
                                   hidden_states=base.hidden_states)
        return out if return_dict else out.to_tuple()
