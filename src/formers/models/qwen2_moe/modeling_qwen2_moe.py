"""Qwen2-MoE: Qwen2's attention (biased q/k/v) with a sparse block on the layers `is_moe_layer` picks:
softmax in float32, top-k, renormalised only with `norm_topk_prob`, plus a shared expert every token goes
through, scaled by sigmoid(shared_expert_gate(x)). Other layers keep a dense gated MLP. Checkpoint keys
are formers' own module names (mlp.gate, mlp.experts.N.*_proj, mlp.shared_expert.*, mlp.shared_expert_gate).
"""
from __future__ import annotations

from torch import nn

from ...modeling.mlp import GatedMLP
from ...modeling.moe import MoeDecoderForCausalLM, MoeDecoderModel, SparseMoeBlock, load_balancing_loss_func
from ..qwen2.modeling_qwen2 import Qwen2Model
from .configuration_qwen2_moe import Qwen2MoeConfig

__all__ = ["Qwen2MoeModel", "Qwen2MoeForCausalLM", "load_balancing_loss_func"]


class Qwen2MoeModel(MoeDecoderModel):
    config_class = Qwen2MoeConfig
    layer_spec = staticmethod(Qwen2Model.layer_spec)

    @classmethod
    def make_mlp(cls, config: Qwen2MoeConfig, layer_idx: int) -> nn.Module:
        if not config.is_moe_layer(layer_idx):
            return GatedMLP(config.hidden_size, config.intermediate_size, config.hidden_act)
        return SparseMoeBlock(config.hidden_size, config.moe_intermediate_size, config.num_experts,
                              config.num_experts_per_tok, hidden_act=config.hidden_act,
                              norm_topk_prob=config.norm_topk_prob,
                              shared_expert_intermediate_size=config.shared_expert_intermediate_size,
                              shared_expert_gated=True)


class Qwen2MoeForCausalLM(MoeDecoderForCausalLM):
    config_class = Qwen2MoeConfig
    base_model_class = Qwen2MoeModel
