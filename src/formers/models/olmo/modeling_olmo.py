"""OLMo (v1): the Llama layout with parameter-free LayerNorms (no weight, no bias, eps 1e-5, computed in
float32), optional clamping of the q/k/v projections (`clip_qkv`), optional attention biases, and 4.45's own
rotary scaling (below) rather than the shared rope utils."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from ...modeling.rope import ROPE_INIT_FUNCTIONS, RotaryEmbedding
from .configuration_olmo import OlmoConfig


class ParameterFreeLayerNorm(nn.Module):
    """(x - mean) / sqrt(var + 1e-5) in float32, cast back to the input dtype; nothing to learn or load."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.normalized_shape = (hidden_size,)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(hidden.float(), self.normalized_shape, None, None, eps=1e-5).to(hidden.dtype)


class OlmoRotaryEmbedding(RotaryEmbedding):
    """OLMo's rotary in 4.45: plain RoPE frequencies; "linear" scaling divides the positions (not the
    frequencies) by the factor; "dynamic" recomputes the base (float32 tensor math) whenever the longest
    position passes max_position_embeddings and keeps those frequencies afterwards (never resets)."""

    def __init__(self, config: OlmoConfig, device=None):
        super().__init__(config, device)
        self.rope_type = "default"  # the scaling below replaces the shared one
        with torch.device(device or "cpu"):
            inv_freq, _ = ROPE_INIT_FUNCTIONS["default"](config, device)
        self.inv_freq = inv_freq
        self.scaling = config.rope_scaling

    def _grow_base(self, position_ids: torch.Tensor) -> None:
        """Dynamic NTK, without a host sync: the new frequencies are kept only where the length has grown."""
        factor, max_pos, dim = self.scaling["factor"], self.config.max_position_embeddings, self.config.head_dim
        seq_len = position_ids.max() + 1
        base = self.config.rope_theta * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=position_ids.device).float() / dim
        self.inv_freq = torch.where(seq_len > max_pos, 1.0 / (base ** exponents), self.inv_freq.to(base.device))

    def forward(self, like: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scaling is not None and self.scaling["type"] == "linear":
            position_ids = position_ids.float() / self.scaling["factor"]
        elif self.scaling is not None:
            self._grow_base(position_ids)
        return super().forward(like, position_ids)


class OlmoModel(DecoderModel):
    config_class = OlmoConfig

    @staticmethod
    def layer_spec(config: OlmoConfig, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             qkv_bias=config.attention_bias, o_bias=config.attention_bias, clip_qkv=config.clip_qkv)

    @classmethod
    def make_norm(cls, config: OlmoConfig) -> nn.Module:
        return ParameterFreeLayerNorm(config.hidden_size)

    @classmethod
    def make_rotary(cls, config: OlmoConfig) -> nn.Module:
        return OlmoRotaryEmbedding(config, device=torch.device("cpu"))


class OlmoForCausalLM(DecoderForCausalLM):
    config_class = OlmoConfig
    base_model_class = OlmoModel
