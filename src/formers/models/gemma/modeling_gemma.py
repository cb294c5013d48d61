"""Gemma: Llama with zero-centred RMSNorm weights applied as (1 + w), GeGLU (tanh GELU), a head size
independent of hidden/heads, and embeddings scaled by sqrt(hidden_size) rounded to the activation dtype."""
from __future__ import annotations

import torch
from torch import nn

from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from ...modeling.mlp import GatedMLP
from ...modeling.norms import OffsetRMSNorm
from .configuration_gemma import GemmaConfig


def scale_embeddings(config, hidden: torch.Tensor) -> torch.Tensor:
    """hidden * sqrt(hidden_size), the factor rounded to hidden's dtype first (bf16 rounding matters)."""
    return hidden * torch.tensor(config.hidden_size ** 0.5, dtype=hidden.dtype)


class GemmaModel(DecoderModel):
    config_class = GemmaConfig

    @staticmethod
    def layer_spec(config: GemmaConfig, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             qkv_bias=config.attention_bias, o_bias=config.attention_bias)

    @classmethod
    def make_norm(cls, config: GemmaConfig) -> nn.Module:
        return OffsetRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    @classmethod
    def make_mlp(cls, config: GemmaConfig, layer_idx: int) -> nn.Module:
        return GatedMLP(config.hidden_size, config.intermediate_size, config.mlp_activation)

    def embed_inputs(self, inputs_embeds: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return scale_embeddings(self.config, inputs_embeds)


class GemmaForCausalLM(DecoderForCausalLM):
    config_class = GemmaConfig
    base_model_class = GemmaModel
