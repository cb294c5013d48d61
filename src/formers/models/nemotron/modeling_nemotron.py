"""Nemotron (Minitron, Nemotron-4): the Llama layout with LayerNorm1P (a LayerNorm with bias whose weight is
stored as w - 1), a non-gated squared-ReLU MLP (`up_proj`, `down_proj`), rotary on the first half of each
head (`partial_rotary_factor`), optional attention/MLP biases and an untied LM head. 4.45 always uses the
default RoPE frequencies (no `rope_scaling`)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from ...modeling.mlp import MLP
from ...modeling.norms import LayerNorm
from ...modeling.rope import RotaryEmbedding
from .configuration_nemotron import NemotronConfig


class LayerNorm1P(LayerNorm):
    """LayerNorm applied with weight (1 + w), in the input's dtype (`1 + w` rounded to the weight's dtype).
    Under CUDA autocast, input, weight and bias are cast to the autocast dtype and normalised there, as 4.45
    does (plain autocast would run layer_norm in float32); 4.45 leaves CPU autocast alone."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight + 1, self.bias
        if hidden.device.type != "cuda" or not torch.is_autocast_enabled("cuda"):
            return F.layer_norm(hidden, self.normalized_shape, weight, bias, self.eps)
        dtype = torch.get_autocast_dtype("cuda")
        with torch.autocast("cuda", enabled=False):
            return F.layer_norm(hidden.to(dtype), self.normalized_shape, weight.to(dtype),
                                None if bias is None else bias.to(dtype), self.eps)


class NemotronModel(DecoderModel):
    config_class = NemotronConfig

    @staticmethod
    def layer_spec(config: NemotronConfig, layer_idx: int) -> AttentionSpec:
        if config.num_key_value_heads is None:
            raise ConfigError("NemotronConfig field 'num_key_value_heads' is None; expected the number of key/value "
                              "heads (4.45.2 cannot build this model either)")
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             qkv_bias=config.attention_bias, o_bias=config.attention_bias)

    @classmethod
    def make_norm(cls, config: NemotronConfig) -> nn.Module:
        return LayerNorm1P(config.hidden_size, eps=config.norm_eps)

    @classmethod
    def make_mlp(cls, config: NemotronConfig, layer_idx: int) -> nn.Module:
        return MLP(config.hidden_size, config.intermediate_size, config.hidden_act, bias=config.mlp_bias)

    @classmethod
    def make_rotary(cls, config: NemotronConfig) -> nn.Module:
        """Default RoPE frequencies: 4.45 keeps a checkpoint's `rope_scaling` in the config but never applies it."""
        plain = copy.copy(config)
        vars(plain).pop("rope_scaling", None)
        return RotaryEmbedding(plain, device=torch.device("cpu"))


class NemotronForCausalLM(DecoderForCausalLM):
    config_class = NemotronConfig
    base_model_class = NemotronModel
