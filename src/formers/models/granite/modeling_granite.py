"""Granite: the Llama layout with four scalar multipliers: token embeddings times `embedding_multiplier`,
attention scores scaled by `attention_multiplier` (not 1/sqrt(head_dim)), each attention and MLP output times
`residual_multiplier` before it joins the residual, and logits divided by `logits_scaling`."""
from __future__ import annotations

import torch
from torch import nn

from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderLayer, DecoderModel
from .configuration_granite import GraniteConfig


class GraniteModel(DecoderModel):
    config_class = GraniteConfig

    @staticmethod
    def layer_spec(config: GraniteConfig, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             qkv_bias=config.attention_bias, o_bias=config.attention_bias,
                             scale=config.attention_multiplier)

    @classmethod
    def make_layer(cls, config: GraniteConfig, layer_idx: int) -> nn.Module:
        return DecoderLayer(cls.make_attention(config, layer_idx), cls.make_mlp(config, layer_idx),
                            lambda: cls.make_norm(config), cls.residual, branch_scale=config.residual_multiplier)

    def embed_inputs(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return inputs_embeds * self.config.embedding_multiplier


class GraniteForCausalLM(DecoderForCausalLM):
    config_class = GraniteConfig
    base_model_class = GraniteModel

    def final_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.config.logits_scaling
