"""Starcoder2: the Llama layout with LayerNorms (weight and bias), biases on every attention and MLP linear
(`use_bias`), a non-gated tanh-GELU MLP (`c_fc`, `c_proj`) and grouped KV heads; the LM head is tied to the
embeddings by default. `sliding_window` has no effect outside flash attention in 4.45 (see the config)."""
from __future__ import annotations

from torch import nn

from ...loading.key_map import KeyMap
from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from ...modeling.mlp import MLP
from ...modeling.norms import LayerNorm
from .configuration_starcoder2 import Starcoder2Config

STARCODER2_KEYS = KeyMap(renames=(("layers.{L}.mlp.c_fc.{P}", "layers.{L}.mlp.up_proj.{P}"),
                                  ("layers.{L}.mlp.c_proj.{P}", "layers.{L}.mlp.down_proj.{P}")))


class Starcoder2Model(DecoderModel):
    config_class = Starcoder2Config
    checkpoint_keys = STARCODER2_KEYS

    @staticmethod
    def layer_spec(config: Starcoder2Config, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             qkv_bias=config.use_bias, o_bias=config.use_bias,
                             sliding_window=config.layer_sliding_window(layer_idx))

    @classmethod
    def make_norm(cls, config: Starcoder2Config) -> nn.Module:
        return LayerNorm(config.hidden_size, eps=config.norm_epsilon)

    @classmethod
    def make_mlp(cls, config: Starcoder2Config, layer_idx: int) -> nn.Module:
        return MLP(config.hidden_size, config.intermediate_size, config.hidden_act, bias=config.use_bias)


class Starcoder2ForCausalLM(DecoderForCausalLM):
    config_class = Starcoder2Config
    base_model_class = Starcoder2Model
    checkpoint_keys = STARCODER2_KEYS
