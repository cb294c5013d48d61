"""GPTBigCode (SantaCoder, StarCoder 1): GPT-2's block with multi-query attention (or multi-head), plain
nn.Linear weights, q/k/v fused in `c_attn` (multi-query: [q, k, v] end to end; multi-head: head by
head), positions counted from the attention mask, and 4.45's own tuple-cache layout: one tensor per
layer holding keys and values side by side on the last axis ([B, S, 2D] multi-query, [B, H, S, 2D])."""
from __future__ import annotations

import torch

from ...cache import Cache, DynamicCache
from ...loading.key_map import Fused, KeyMap, split_per_head, split_sizes
from ...modeling.attention import AttentionSpec
from ..gpt2.modeling_gpt2 import GPT2_KEYS, GPT2LMHeadModel, GPT2Model
from .configuration_gpt_bigcode import GPTBigCodeConfig

_QKV = tuple(f"layers.{{L}}.self_attn.{p}_proj.{{P}}" for p in "qkv")


def _split_c_attn(tensor, config: GPTBigCodeConfig, fields) -> list[torch.Tensor]:
    if config.multi_query:
        return split_sizes(lambda c: [c.n_embd, c.head_dim, c.head_dim])[0](tensor, config, fields)
    return _PER_HEAD[0](tensor, config, fields)


def _join_c_attn(parts, config: GPTBigCodeConfig, fields) -> torch.Tensor:
    return torch.cat(parts) if config.multi_query else _PER_HEAD[1](parts, config, fields)


_PER_HEAD = split_per_head(lambda config: config.n_head)
BIGCODE_KEYS = KeyMap(prefix="transformer", renames=GPT2_KEYS.renames,
                      fused=(Fused("h.{L}.attn.c_attn.{P}", _QKV, _split_c_attn, _join_c_attn),),
                      ignored=("h.{L}.attn.bias", "bias"))  # causal-mask buffers


class _BigCodeTupleCache:
    """4.45's GPTBigCode tuple cache: per layer, keys and values concatenated on the last axis."""

    config_class = GPTBigCodeConfig
    checkpoint_keys = BIGCODE_KEYS

    def cache_from_legacy(self, past_key_values) -> Cache:
        if past_key_values is None:
            return DynamicCache()
        pairs = []
        for fused in past_key_values:
            fused = fused if fused.dim() == 4 else fused.unsqueeze(1)  # multi-query: [B, S, 2D] -> [B, 1, S, 2D]
            pairs.append(fused.chunk(2, dim=-1))
        return DynamicCache.from_legacy_cache(tuple(pairs))

    def cache_to_legacy(self, cache: Cache) -> tuple:
        layers = (torch.cat((keys, values), dim=-1) for keys, values in cache.to_legacy_cache())
        return tuple(fused.squeeze(1) if fused.shape[1] == 1 else fused for fused in layers)


class GPTBigCodeModel(_BigCodeTupleCache, GPT2Model):
    @staticmethod
    def layer_spec(config: GPTBigCodeConfig, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.n_head, config.num_key_value_heads, config.head_dim, qkv_bias=True, o_bias=True,
                             scale=config.score_scale(layer_idx), rotary=None)

    def default_position_ids(self, attention_mask: torch.Tensor | None, cache_position: torch.Tensor) -> torch.Tensor:
        if attention_mask is None or attention_mask.dim() != 2:
            return cache_position.unsqueeze(0)
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
        return positions[:, cache_position]


class GPTBigCodeForCausalLM(_BigCodeTupleCache, GPT2LMHeadModel):
    base_model_class = GPTBigCodeModel
