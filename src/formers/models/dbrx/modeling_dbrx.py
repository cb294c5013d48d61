"""DBRX: one fused Wqkv projection (clamped to +-`clip_qkv` when set), LayerNorms without bias, and a sparse
mixture of experts whose top-k softmax weights are divided by their p-norm (`moe_normalize_expert_weights`,
1.0 = L1; None = not at all). 4.45 reports the router's softmax probabilities as the "router logits" (its aux
loss softmaxes them again): formers does the same. Checkpoint: `transformer.` prefix, `blocks.N.norm_attn_norm.
{norm_1, attn.Wqkv, attn.out_proj, norm_2}`, `ffn.router.layer`, experts stacked as `ffn.experts.mlp.{w1, v1,
w2}` [E*I, C] (w2 holds each expert's down projection transposed)."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from ...loading.key_map import Fused, KeyMap
from ...modeling.attention import AttentionSpec
from ...modeling.moe import MoeDecoderForCausalLM, MoeDecoderModel, SparseMoeBlock
from ...modeling.norms import LayerNorm
from .configuration_dbrx import DbrxConfig


def _expert_rows(transpose: bool):
    """(split, join) for a [E*I, C] tensor of E experts' [I, C] blocks (transposed to [C, I] with `transpose`)."""
    def split(tensor: torch.Tensor, config: DbrxConfig, fields) -> list[torch.Tensor]:
        blocks = tensor.view(config.ffn_config.moe_num_experts, -1, tensor.shape[-1]).unbind(0)
        return [block.t().contiguous() for block in blocks] if transpose else list(blocks)

    def join(parts: list[torch.Tensor], config: DbrxConfig, fields) -> torch.Tensor:
        return torch.cat([part.t() for part in parts] if transpose else parts)
    return split, join


@lru_cache(maxsize=None)
def dbrx_keys(num_experts: int) -> KeyMap:
    """The checkpoint layout of a DBRX model with `num_experts` experts per layer."""
    def per_expert(module: str) -> tuple[str, ...]:
        return tuple(f"layers.{{L}}.mlp.experts.{e}.{module}.weight" for e in range(num_experts))
    block = "blocks.{L}.norm_attn_norm"
    return KeyMap(
        prefix="transformer",
        renames=(("wte.weight", "embed_tokens.weight"),
                 (f"{block}.norm_1.weight", "layers.{L}.input_layernorm.weight"),
                 (f"{block}.norm_2.weight", "layers.{L}.post_attention_layernorm.weight"),
                 (f"{block}.attn.Wqkv.weight", "layers.{L}.self_attn.qkv_proj.weight"),
                 (f"{block}.attn.out_proj.weight", "layers.{L}.self_attn.o_proj.weight"),
                 ("blocks.{L}.ffn.router.layer.weight", "layers.{L}.mlp.gate.weight"),
                 ("norm_f.weight", "norm.weight")),
        fused=(Fused("blocks.{L}.ffn.experts.mlp.w1", per_expert("gate_proj"), *_expert_rows(False)),
               Fused("blocks.{L}.ffn.experts.mlp.v1", per_expert("up_proj"), *_expert_rows(False)),
               Fused("blocks.{L}.ffn.experts.mlp.w2", per_expert("down_proj"), *_expert_rows(True))))


class DbrxMoeBlock(SparseMoeBlock):
    """The shared block (p-norm weights), reporting the router's softmax probabilities in the hidden dtype."""

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, router_logits = super().forward(hidden)
        return out, router_logits.softmax(dim=-1, dtype=torch.float32).to(hidden.dtype)


class _DbrxLayout:
    config_class = DbrxConfig
    reference_layer_kinds = {"mlp.experts.": "parameter"}

    @classmethod
    def key_map(cls, config: DbrxConfig) -> KeyMap:
        return dbrx_keys(config.ffn_config.moe_num_experts)


class DbrxModel(_DbrxLayout, MoeDecoderModel):
    @staticmethod
    def layer_spec(config: DbrxConfig, layer_idx: int) -> AttentionSpec:
        return AttentionSpec(config.n_heads, config.num_key_value_heads, config.head_dim, fused_qkv=True,
                             clip_qkv=config.attn_config.clip_qkv)

    @classmethod
    def make_norm(cls, config: DbrxConfig) -> nn.Module:
        return LayerNorm(config.d_model, bias=False)

    @classmethod
    def make_mlp(cls, config: DbrxConfig, layer_idx: int) -> nn.Module:
        ffn = config.ffn_config
        return DbrxMoeBlock(config.d_model, ffn.ffn_hidden_size, ffn.moe_num_experts, ffn.moe_top_k,
                            hidden_act=config.hidden_act, norm_topk_prob=False,
                            normalize_p=ffn.moe_normalize_expert_weights, jitter_noise=ffn.moe_jitter_eps or 0.0)


class DbrxForCausalLM(_DbrxLayout, MoeDecoderForCausalLM):
    base_model_class = DbrxModel

    @classmethod
    def router_shape(cls, config: DbrxConfig) -> tuple[int, int]:
        return config.ffn_config.moe_num_experts, config.ffn_config.moe_top_k
