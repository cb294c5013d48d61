"""Bloom: ALiBi instead of position embeddings, a LayerNorm on the embeddings, q/k/v fused head by head,
a tanh-GELU MLP four times wide, biases everywhere, tied embeddings; optionally the residual is taken
after each norm (`apply_residual_connection_post_layernorm`)."""
from __future__ import annotations

import torch
from torch import nn

from ...loading.key_map import Fused, KeyMap, split_per_head
from ...modeling.alibi import alibi_slopes, token_positions
from ...modeling.attention import Attention, AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderLayer, DecoderModel
from ...modeling.mlp import MLP
from ...modeling.norms import LayerNorm
from .configuration_bloom import BloomConfig

BLOOM_KEYS = KeyMap(
    prefix="transformer",
    renames=(("word_embeddings.weight", "embed_tokens.weight"),
             ("word_embeddings_layernorm.{P}", "embed_norm.{P}"),
             ("h.{L}.self_attention.dense.{P}", "layers.{L}.self_attn.o_proj.{P}"),
             ("h.{L}.mlp.dense_h_to_4h.{P}", "layers.{L}.mlp.up_proj.{P}"),
             ("h.{L}.mlp.dense_4h_to_h.{P}", "layers.{L}.mlp.down_proj.{P}"),
             ("h.{L}.{N}.{P}", "layers.{L}.{N}.{P}"),  # input_layernorm, post_attention_layernorm
             ("ln_f.{P}", "norm.{P}")),
    fused=(Fused("h.{L}.self_attention.query_key_value.{P}",
                 tuple(f"layers.{{L}}.self_attn.{p}_proj.{{P}}" for p in "qkv"),
                 *split_per_head(lambda config: config.n_head)),),
)


class BloomModel(DecoderModel):
    config_class = BloomConfig
    checkpoint_keys = BLOOM_KEYS
    has_score_bias = True

    def __init__(self, config: BloomConfig):
        super().__init__(config)
        self.embed_norm = self.make_norm(config)

    @classmethod
    def make_layer(cls, config: BloomConfig, layer_idx: int) -> nn.Module:
        spec = AttentionSpec(config.n_head, config.n_head, config.head_dim, qkv_bias=True, o_bias=True, rotary=None)
        attention = Attention(config.hidden_size, spec, layer_idx, dropout=config.attention_dropout,
                              implementation=config._attn_implementation or "sdpa")
        residual = "sequential_normed" if config.apply_residual_connection_post_layernorm else "sequential"
        return DecoderLayer(attention, MLP(config.hidden_size, 4 * config.hidden_size, "bloom_gelu"),
                            lambda: cls.make_norm(config), residual)

    @classmethod
    def make_norm(cls, config: BloomConfig) -> nn.Module:
        return LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)

    @classmethod
    def make_rotary(cls, config: BloomConfig) -> None:
        return None

    def embed_inputs(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_norm(inputs_embeds)

    def score_bias(self, attention_mask, key_positions: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        batch = attention_mask.shape[0] if attention_mask is not None else 1
        positions = token_positions(attention_mask, key_positions, batch)  # [B, S]
        slopes = alibi_slopes(self.config.n_head, key_positions.device)
        return (slopes[None, :, None, None] * positions[:, None, None, :]).to(dtype)  # [B, H, 1, S]


class BloomForCausalLM(DecoderForCausalLM):
    config_class = BloomConfig
    base_model_class = BloomModel
    checkpoint_keys = BLOOM_KEYS
