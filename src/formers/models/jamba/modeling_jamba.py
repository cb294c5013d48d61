"""Jamba: a decoder whose layers are attention (no positional encoding, grouped kv heads) every
`attn_layer_period` layers at `attn_layer_offset` and Mamba mixers elsewhere, each followed by a dense gated
MLP or, every `expert_layer_period` layers at `expert_layer_offset`, a mixture of experts.

Per layer: h += mixer(rms_norm(h)); h += feed_forward(rms_norm(h)). The Mamba mixer is Mamba's
(`models/mamba`, its selective scan) with weighted RMS norms on dt, B and C; the MoE block is the shared
one (softmax in float32, top-k, the k weights NOT renormalised), its router logits and load-balancing loss
as 4.45. Attention layers see the padded causal mask; Mamba layers zero a prompt's padded positions.
The cache (`HybridMambaAttentionDynamicCache`) keeps keys/values for attention layers, conv/SSM states
for Mamba layers.

Checkpoint keys are 4.45's: model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj | mamba.*,
pre_ff_layernorm, feed_forward.{gate,up,down}_proj | feed_forward.{router, experts.E.*}},
model.final_layernorm, lm_head; formers names them as every decoder does (post_attention_layernorm,
mlp.gate, model.norm).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from ...cache.hybrid_mamba import HybridMambaAttentionDynamicCache
from ...errors import CacheError
from ...loading.key_map import KeyMap
from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderLayer
from ...modeling.masks import build_attention_mask
from ...modeling.moe import (
    MoeDecoderForCausalLM,
    MoeDecoderModel,
    SparseMoeBlock,
    load_balancing_loss_func,
)
from ...modeling.norms import RMSNorm
from ...modeling_utils import PreTrainedModel
from ..mamba.modeling_mamba import MambaMixer
from .configuration_jamba import JambaConfig

__all__ = ["HybridMambaAttentionDynamicCache", "JambaForCausalLM", "JambaModel", "JambaPreTrainedModel",
           "load_balancing_loss_func"]

JAMBA_KEYS = KeyMap(renames=(
    ("layers.{L}.pre_ff_layernorm.{P}", "layers.{L}.post_attention_layernorm.{P}"),
    ("layers.{L}.feed_forward.router.{P}", "layers.{L}.mlp.gate.{P}"),
    ("layers.{L}.feed_forward.experts.{E}.{W}.{P}", "layers.{L}.mlp.experts.{E}.{W}.{P}"),
    ("layers.{L}.feed_forward.{W}.{P}", "layers.{L}.mlp.{W}.{P}"),
    ("final_layernorm.{P}", "norm.{P}"),
))


class JambaMambaMixer(MambaMixer):
    """Mamba's mixer on Jamba's config fields, dt/B/C passed through weighted RMS norms before the scan."""

    def __init__(self, config: JambaConfig, layer_idx: int):
        super().__init__(SimpleNamespace(
            hidden_size=config.hidden_size, intermediate_size=config.mamba_expand * config.hidden_size,
            state_size=config.mamba_d_state, conv_kernel=config.mamba_d_conv, time_step_rank=config.mamba_dt_rank,
            hidden_act=config.hidden_act, use_bias=config.mamba_proj_bias, use_conv_bias=config.mamba_conv_bias,
        ), layer_idx)
        self.dt_layernorm = RMSNorm(self.time_step_rank, eps=config.rms_norm_eps)
        self.b_layernorm = RMSNorm(self.ssm_state_size, eps=config.rms_norm_eps)
        self.c_layernorm = RMSNorm(self.ssm_state_size, eps=config.rms_norm_eps)

    def normalize_ssm_inputs(self, time_step, B, C):
        return self.dt_layernorm(time_step), self.b_layernorm(B), self.c_layernorm(C)


class JambaMambaLayer(nn.Module):
    """hidden [B, T, C] -> (hidden, None, router logits or None): h += mamba(ln1(h)); h += ff(ln2(h)).
    Called as a DecoderLayer is; its `mask` is the [B, T] padding mask of a prompt, or None."""

    def __init__(self, config: JambaConfig, layer_idx: int, mlp: nn.Module):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mamba = JambaMambaMixer(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = mlp

    _feed_forward = DecoderLayer._feed_forward

    def forward(self, hidden, cos, sin, mask, cache, cache_position, output_attentions=False):
        hidden = hidden + self.mamba(self.input_layernorm(hidden), cache, mask)
        out, router_logits = self._feed_forward(self.post_attention_layernorm(hidden))
        return hidden + out, None, router_logits


class JambaPreTrainedModel(PreTrainedModel):
    config_class = JambaConfig
    checkpoint_keys = JAMBA_KEYS
    _no_split_modules = ["DecoderLayer", "JambaMambaLayer"]
    _is_stateful = True

    def _init_weights(self, module: nn.Module) -> None:
        """As 4.45: linear and conv weights normal(initializer_range), their biases zero; embeddings normal."""
        super()._init_weights(module)
        if isinstance(module, nn.Conv1d):
            module.weight.data.normal_(mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                module.bias.data.zero_()


class JambaModel(JambaPreTrainedModel, MoeDecoderModel):
    """input ids [B, T] -> hidden states [B, T, C]. With `use_cache` and no cache given, it starts a
    HybridMambaAttentionDynamicCache (4.45 returns none then) so the result can be continued."""

    @staticmethod
    def layer_spec(config: JambaConfig, layer_idx: int) -> AttentionSpec:
        # no rotary; 4.45's eager/SDPA attention ignores `sliding_window` (only its flash path reads it)
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim, rotary=None)

    @classmethod
    def make_rotary(cls, config: JambaConfig) -> None:
        return None

    @classmethod
    def make_mlp(cls, config: JambaConfig, layer_idx: int) -> nn.Module:
        if config.layers_num_experts[layer_idx] == 1:
            return super().make_mlp(config, layer_idx)
        return SparseMoeBlock(config.hidden_size, config.intermediate_size, config.num_experts,
                              config.num_experts_per_tok, hidden_act=config.hidden_act, norm_topk_prob=False)

    @classmethod
    def make_layer(cls, config: JambaConfig, layer_idx: int) -> nn.Module:
        if config.layers_block_type[layer_idx] == "attention":
            return super().make_layer(config, layer_idx)
        return JambaMambaLayer(config, layer_idx, cls.make_mlp(config, layer_idx))

    def _attention_masks(self, attention_mask, cache_position, cache, length, dtype, output_attentions) -> list:
        """One causal padding mask for every attention layer; for Mamba layers the [B, T] padding mask of the
        new positions while the cache is empty or several positions arrive (a single cached token: None)."""
        implicit = self.config._attn_implementation != "eager" and not output_attentions
        key_length = cache.attention_key_length(length) if cache is not None else length
        causal = build_attention_mask(attention_mask, cache_position, key_length, dtype,
                                      allow_implicit_causal=implicit)
        new = cache_position.shape[0]
        fresh = cache is None or cache.get_seq_length() == 0
        padding = attention_mask[:, -new:] if attention_mask is not None and (fresh or new > 1) else None
        return [padding if isinstance(layer, JambaMambaLayer) else causal for layer in self.layers]

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, return_dict=None, **kwargs: Any):
        """As 4.45; `past_key_values` must be a HybridMambaAttentionDynamicCache (no tuple form exists)."""
        use_cache = (self.config.use_cache and not self.training) if use_cache is None else use_cache
        return_dict = self.config.return_dict if return_dict is None else return_dict
        given = input_ids if input_ids is not None else inputs_embeds
        if past_key_values is not None and not isinstance(past_key_values, HybridMambaAttentionDynamicCache):
            raise CacheError(f"JambaModel.forward: `past_key_values` must be a HybridMambaAttentionDynamicCache, "
                             f"got {type(past_key_values).__name__}")
        if use_cache and past_key_values is None and given is not None:
            past_key_values = HybridMambaAttentionDynamicCache(self.config, given.shape[0], dtype=self.dtype,
                                                               device=given.device)
        out = super().forward(input_ids, attention_mask, position_ids, past_key_values if use_cache else None,
                              inputs_embeds, use_cache=use_cache, return_dict=True, **kwargs)
        if use_cache:
            past_key_values.advance(given.shape[1])
        if out.attentions is not None:  # Mamba layers have no attention weights: only attention layers report
            out.attentions = tuple(w for w in out.attentions if w is not None)
        return out if return_dict else out.to_tuple()


class JambaForCausalLM(JambaPreTrainedModel, MoeDecoderForCausalLM):
    """JambaModel + LM head: ids [B, T] -> logits [B, T, V] (float32); router logits and aux loss as 4.45."""

    base_model_class = JambaModel

    def make_generation_cache(self, batch_size: int, max_length: int, device: torch.device,
                              dtype: torch.dtype) -> HybridMambaAttentionDynamicCache:
        """generate()'s cache: keys/values of the attention layers, states of the Mamba layers."""
        return HybridMambaAttentionDynamicCache(self.config, batch_size, dtype=dtype, device=device)
