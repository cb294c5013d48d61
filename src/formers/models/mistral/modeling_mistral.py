"""Mistral: Llama without biases, every layer attending through a sliding window."""
from __future__ import annotations

from ...modeling.decoder import DecoderForCausalLM, DecoderModel, LayerSpec
from .configuration_mistral import MistralConfig


class MistralModel(DecoderModel):
    config_class = MistralConfig

    @staticmethod
    def layer_spec(config: MistralConfig, layer_idx: int) -> LayerSpec:
        return LayerSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                         sliding_window=config.sliding_window)


class MistralForCausalLM(DecoderForCausalLM):
    config_class = MistralConfig
    base_model_class = MistralModel
