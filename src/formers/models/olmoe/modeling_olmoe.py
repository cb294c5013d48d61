"""OLMoE: the Llama layout with RMSNorms over the whole q and k projections (not per head; applied before the
optional `clip_qkv` clamp) and a sparse mixture of experts in place of the MLP: softmax over all experts,
top `num_experts_per_tok`, renormalised only with `norm_topk_prob` (real checkpoints: top-8 of 64, not
renormalised). Checkpoint keys are formers' own (`mlp.gate`, `mlp.experts.N.{gate,up,down}_proj`)."""
from __future__ import annotations

from torch import nn

from ...modeling.attention import AttentionSpec
from ...modeling.moe import MoeDecoderForCausalLM, MoeDecoderModel, SparseMoeBlock
from ...modeling.norms import RMSNorm
from .configuration_olmoe import OlmoeConfig


class OlmoeModel(MoeDecoderModel):
    config_class = OlmoeConfig

    @staticmethod
    def layer_spec(config: OlmoeConfig, layer_idx: int) -> AttentionSpec:
        q_width = config.num_attention_heads * config.head_dim
        kv_width = config.num_key_value_heads * config.head_dim
        return AttentionSpec(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                             qkv_bias=config.attention_bias, o_bias=config.attention_bias, clip_qkv=config.clip_qkv,
                             qk_norm=lambda: (RMSNorm(q_width, config.rms_norm_eps),
                                              RMSNorm(kv_width, config.rms_norm_eps)),
                             qk_norm_per_head=False)

    @classmethod
    def make_mlp(cls, config: OlmoeConfig, layer_idx: int) -> nn.Module:
        return SparseMoeBlock(config.hidden_size, config.intermediate_size, config.num_experts,
                              config.num_experts_per_tok, hidden_act=config.hidden_act,
                              norm_topk_prob=config.norm_topk_prob)


class OlmoeForCausalLM(MoeDecoderForCausalLM):
    config_class = OlmoeConfig
    base_model_class = OlmoeModel
