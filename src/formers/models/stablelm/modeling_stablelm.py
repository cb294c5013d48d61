"""StableLM (2): the Llama layout with LayerNorms (weight and bias), rotary on the first quarter of each head
(`partial_rotary_factor`), optional q/k/v biases, an optional LayerNorm per query head and per key head
(`qk_layernorm`; checkpoints keep one `q_layernorm.norms.<head>` module per head) and an optional parallel
block (`use_parallel_residual`: attention and MLP off one norm, summed h + attn + mlp)."""
from __future__ import annotations

import torch
from torch import nn

from ...loading.key_map import KeyMap
from ...modeling.attention import AttentionSpec
from ...modeling.decoder import DecoderForCausalLM, DecoderLayer, DecoderModel
from ...modeling.mlp import GatedMLP
from ...modeling.norms import LayerNorm
from .configuration_stablelm import StableLmConfig

STABLELM_KEYS = KeyMap(renames=(
    ("layers.{L}.self_attn.q_layernorm.norms.{H}.weight", "layers.{L}.self_attn.q_norm.norms.{H}.weight"),
    ("layers.{L}.self_attn.k_layernorm.norms.{H}.weight", "layers.{L}.self_attn.k_norm.norms.{H}.weight"),
))


class PerHeadLayerNorm(nn.Module):
    """[B, T, H, D] -> [B, T, H, D]: head h normalised over D by its own bias-free LayerNorm `norms[h]`."""

    def __init__(self, num_heads: int, head_dim: int, eps: float):
        super().__init__()
        self.norms = nn.ModuleList(LayerNorm(head_dim, eps=eps, bias=False) for _ in range(num_heads))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.stack([norm(hidden[:, :, head]) for head, norm in enumerate(self.norms)], dim=2)


class StableLmModel(DecoderModel):
    config_class = StableLmConfig
    checkpoint_keys = STABLELM_KEYS

    @staticmethod
    def layer_spec(config: StableLmConfig, layer_idx: int) -> AttentionSpec:
        heads, kv_heads, dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        qk_norm = None
        if config.qk_layernorm:
            def qk_norm():
                eps = config.layer_norm_eps
                return PerHeadLayerNorm(heads, dim, eps), PerHeadLayerNorm(kv_heads, dim, eps)
        return AttentionSpec(heads, kv_heads, dim, qkv_bias=config.use_qkv_bias, qk_norm=qk_norm)

    @classmethod
    def make_norm(cls, config: StableLmConfig) -> nn.Module:
        return LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    @classmethod
    def make_mlp(cls, config: StableLmConfig, layer_idx: int) -> nn.Module:
        return GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_act)

    @classmethod
    def make_layer(cls, config: StableLmConfig, layer_idx: int) -> nn.Module:
        residual = "parallel_residual_first" if config.use_parallel_residual else "sequential"
        return DecoderLayer(cls.make_attention(config, layer_idx), cls.make_mlp(config, layer_idx),
                            lambda: cls.make_norm(config), residual)


class StableLmForCausalLM(DecoderForCausalLM):
    config_class = StableLmConfig
    base_model_class = StableLmModel
    checkpoint_keys = STABLELM_KEYS
