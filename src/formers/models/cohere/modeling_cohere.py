"""Cohere (Command R / R+): one bias-free LayerNorm (mean subtracted, computed in float32) feeding attention
and a gated SiLU MLP in parallel; interleaved (GPT-J style) rotary pairs; optional per-head LayerNorms on
queries and keys (`use_qk_norm`, weights [heads, head_dim]); logits multiplied by `logit_scale` after the
float cast; embeddings tied by default."""
from __future__ import annotations

import torch
from torch import nn

from ...kernels.linear import float_logits
from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderModel
from ...modeling.mlp import GatedMLP
from ...modeling.rope import RotaryEmbedding
from .configuration_cohere import CohereConfig


class CohereLayerNorm(nn.Module):
    """Bias-free LayerNorm over the last dim, in float32, cast back to the input dtype. `shape` is the weight's:
    (hidden,) for the block norms, (heads, head_dim) for the q/k norms (each head its own weights)."""

    def __init__(self, shape: tuple[int, ...], eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(shape))
        self.variance_epsilon = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # spelled out (not F.layer_norm) so fp16 outputs round as 4.45's do
        x = hidden.float()
        centred = x - x.mean(-1, keepdim=True)
        normed = centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return (self.weight.float() * normed).to(hidden.dtype)


class CohereModel(DecoderModel):
    config_class = CohereConfig
    residual = "parallel_residual_first"

    @staticmethod
    def layer_spec(config: CohereConfig, layer_idx: int) -> AttentionSpec:
        heads, kv_heads, dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        qk_norm = None
        if config.use_qk_norm:
            def qk_norm():
                eps = config.layer_norm_eps
                return CohereLayerNorm((heads, dim), eps), CohereLayerNorm((kv_heads, dim), eps)
        return AttentionSpec(heads, kv_heads, dim, qkv_bias=config.attention_bias, o_bias=config.attention_bias,
                             rotary="interleaved", rotary_in_float32=True, qk_norm=qk_norm)

    @classmethod
    def make_norm(cls, config: CohereConfig) -> nn.Module:
        return CohereLayerNorm((config.hidden_size,), config.layer_norm_eps)

    @classmethod
    def make_mlp(cls, config: CohereConfig, layer_idx: int) -> nn.Module:
        return GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_act)

    @classmethod
    def make_rotary(cls, config: CohereConfig) -> nn.Module:
        return RotaryEmbedding(config, device=torch.device("cpu"), interleaved=True)


class CohereForCausalLM(DecoderForCausalLM):
    config_class = CohereConfig
    base_model_class = CohereModel

    def final_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return float_logits(logits) * self.config.logit_scale  # 4.45 scales after the float cast
