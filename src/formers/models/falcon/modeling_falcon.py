"""Falcon: one class, three generations.
- Falcon-7B: one KV head (`multi_query`), attention and MLP in parallel off one LayerNorm;
- Falcon-40B/180B (`new_decoder_architecture`): grouped KV heads, q/k/v fused per KV group, two norms
  (`ln_attn`, `ln_mlp`) feeding the parallel block, unless `num_ln_in_parallel_attn` is 1 (Falcon2-11B);
- Falcon-RW (`alibi`): ALiBi instead of rotary, sequential blocks when `parallel_attn` is off.
Non-gated MLP (`activation`, `ffn_hidden_size`), biases only with `bias`, tied embeddings by default."""
from __future__ import annotations

import math

import torch
from torch import nn

from ...cache import Cache, DynamicCache
from ...loading.key_map import Fused, KeyMap, split_per_head, split_sizes
from ...modeling.alibi import alibi_slopes, token_positions
from ...modeling.attention import Attention, AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderLayer, DecoderModel
from ...modeling.mlp import MLP
from ...modeling.norms import LayerNorm
from .configuration_falcon import FalconConfig

_PER_HEAD = split_per_head(lambda config: config.num_attention_heads)
_MULTI_QUERY = split_sizes(lambda config: [config.hidden_size, config.head_dim, config.head_dim])


def _split_grouped(tensor: torch.Tensor, config: FalconConfig) -> list[torch.Tensor]:
    """New architecture: rows grouped per KV head as [its n_rep query heads, its key, its value]."""
    groups, dim = config.num_kv_heads, config.head_dim
    grouped = tensor.reshape(groups, -1, dim, *tensor.shape[1:])  # [Hkv, n_rep + 2, D, (in)]
    flat = (-1, *tensor.shape[1:])
    return [grouped[:, :-2].reshape(flat).contiguous(), grouped[:, -2].reshape(flat).contiguous(),
            grouped[:, -1].reshape(flat).contiguous()]


def _join_grouped(parts: list[torch.Tensor], config: FalconConfig) -> torch.Tensor:
    groups, dim = config.num_kv_heads, config.head_dim
    q, k, v = (p.reshape(groups, -1, dim, *p.shape[1:]) for p in parts)
    return torch.cat([q, k, v], dim=1).reshape(-1, *parts[0].shape[1:])


def _split_qkv(tensor: torch.Tensor, config: FalconConfig, fields) -> list[torch.Tensor]:
    if config.new_decoder_architecture:
        return _split_grouped(tensor, config)
    return (_MULTI_QUERY if config.multi_query else _PER_HEAD)[0](tensor, config, fields)


def _join_qkv(parts: list[torch.Tensor], config: FalconConfig, fields) -> torch.Tensor:
    if config.new_decoder_architecture:
        return _join_grouped(parts, config)
    return (_MULTI_QUERY if config.multi_query else _PER_HEAD)[1](parts, config, fields)


_RENAMES = (("word_embeddings.weight", "embed_tokens.weight"),
            ("h.{L}.self_attention.dense.{P}", "layers.{L}.self_attn.o_proj.{P}"),
            ("h.{L}.mlp.dense_h_to_4h.{P}", "layers.{L}.mlp.up_proj.{P}"),
            ("h.{L}.mlp.dense_4h_to_h.{P}", "layers.{L}.mlp.down_proj.{P}"),
            ("ln_f.{P}", "norm.{P}"),
            ("h.{L}.{N}.{P}", "layers.{L}.{N}.{P}"))  # input_layernorm, post_attention_layernorm
_FUSED = (Fused("h.{L}.self_attention.query_key_value.{P}",
                tuple(f"layers.{{L}}.self_attn.{p}_proj.{{P}}" for p in "qkv"), _split_qkv, _join_qkv),)
KEYS_ONE_NORM = KeyMap(prefix="transformer", renames=_RENAMES, fused=_FUSED)  # input_/post_attention_layernorm
KEYS_TWO_NORMS = KeyMap(prefix="transformer", fused=_FUSED, renames=(
    ("h.{L}.ln_attn.{P}", "layers.{L}.input_layernorm.{P}"),
    ("h.{L}.ln_mlp.{P}", "layers.{L}.post_attention_layernorm.{P}")) + _RENAMES)


class _FalconLayout:
    """What Falcon's base and LM models share: the config-dependent checkpoint layout, and 4.45's tuple
    cache, which holds the new architecture's grouped keys/values repeated to every query head."""

    config_class = FalconConfig

    @classmethod
    def key_map(cls, config: FalconConfig) -> KeyMap:
        two_norms = config.parallel_attn and config.norms_in_parallel_block == 2
        return KEYS_TWO_NORMS if two_norms else KEYS_ONE_NORM

    def _legacy_repeats(self) -> int:
        """How often 4.45's tuple cache repeats each KV head (the new architecture expands them)."""
        config = self.config
        return config.num_attention_heads // config.num_key_value_heads if config.new_decoder_architecture else 1

    def cache_from_legacy(self, past_key_values) -> Cache:
        repeats = self._legacy_repeats()
        if past_key_values and repeats > 1:  # keep one head of each group (4.45 repeats them group-major)
            past_key_values = tuple((k[:, ::repeats], v[:, ::repeats]) for k, v in past_key_values)
        return DynamicCache.from_legacy_cache(past_key_values)

    def cache_to_legacy(self, cache: Cache) -> tuple:
        repeats = self._legacy_repeats()
        pairs = cache.to_legacy_cache()
        if repeats == 1:
            return pairs
        return tuple((k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)) for k, v in pairs)


class FalconModel(_FalconLayout, DecoderModel):
    @property
    def has_score_bias(self) -> bool:
        return self.config.alibi

    @classmethod
    def make_layer(cls, config: FalconConfig, layer_idx: int) -> nn.Module:
        spec = AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             qkv_bias=config.bias, o_bias=config.bias, rotary=None if config.alibi else "half")
        attention = Attention(config.hidden_size, spec, layer_idx, dropout=config.attention_dropout,
                              implementation=config._attn_implementation or "sdpa")
        if not config.parallel_attn:
            residual = "sequential"
        else:
            residual = "parallel2" if config.norms_in_parallel_block == 2 else "parallel"
        mlp = MLP(config.hidden_size, config.ffn_hidden_size, config.activation, bias=config.bias)
        return DecoderLayer(attention, mlp, lambda: cls.make_norm(config), residual)

    @classmethod
    def make_norm(cls, config: FalconConfig) -> nn.Module:
        return LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    @classmethod
    def make_rotary(cls, config: FalconConfig) -> nn.Module | None:
        return None if config.alibi else super().make_rotary(config)

    def score_bias(self, attention_mask, key_positions: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """ALiBi scaled like the scores (1/sqrt(head_dim)); Falcon rounds slope x position to bfloat16."""
        batch = attention_mask.shape[0] if attention_mask is not None else 1
        positions = token_positions(attention_mask, key_positions, batch)  # [B, S]
        slopes = alibi_slopes(self.config.num_attention_heads, key_positions.device).bfloat16()
        bias = (slopes[None, :, None, None] * positions[:, None, None, :]).to(dtype)  # [B, H, 1, S]
        return bias / math.sqrt(self.config.head_dim)


class FalconForCausalLM(_FalconLayout, DecoderForCausalLM):
    base_model_class = FalconModel
