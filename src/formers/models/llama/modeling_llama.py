"""Llama: the reference decoder; attention and MLP biases are config switches."""
from __future__ import annotations

from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from .configuration_llama import LlamaConfig


class LlamaModel(DecoderModel):
    config_class = LlamaConfig

    @staticmethod
    def layer_spec(config: LlamaConfig, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             qkv_bias=config.attention_bias, o_bias=config.attention_bias)


class LlamaForCausalLM(DecoderForCausalLM):
    config_class = LlamaConfig
    base_model_class = LlamaModel
