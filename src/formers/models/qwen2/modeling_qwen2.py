"""Qwen2: biased q/k/v projections; layers from `max_window_layers` on may use a sliding window.

transformers 4.45 applies Qwen2's window only in its flash-attention path (its eager/sdpa paths warn
and attend globally); formers applies it in every kernel, as the flash path and the config intend.
"""
from __future__ import annotations

from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from .configuration_qwen2 import Qwen2Config


class Qwen2Model(DecoderModel):
    config_class = Qwen2Config

    @staticmethod
    def layer_spec(config: Qwen2Config, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             qkv_bias=True, sliding_window=config.layer_sliding_window(layer_idx))


class Qwen2ForCausalLM(DecoderForCausalLM):
    config_class = Qwen2Config
    base_model_class = Qwen2Model
