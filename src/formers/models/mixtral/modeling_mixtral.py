"""Mixtral: Mistral whose every MLP is a sparse mixture of experts (softmax in float32, top-k, the k
weights renormalised to sum 1). Checkpoints call the block `block_sparse_moe` and an expert's
projections w1 (gate), w3 (up), w2 (down); formers' modules are `mlp.gate` and `mlp.experts.N.*_proj`.
"""
from __future__ import annotations

from torch import nn

from ...loading.key_map import KeyMap
from ...modeling.moe import MoeDecoderForCausalLM, MoeDecoderModel, SparseMoeBlock, load_balancing_loss_func
from .configuration_mixtral import MixtralConfig

__all__ = ["MixtralModel", "MixtralForCausalLM", "load_balancing_loss_func"]

MIXTRAL_KEYS = KeyMap(renames=(
    ("layers.{L}.block_sparse_moe.gate.{P}", "layers.{L}.mlp.gate.{P}"),
    ("layers.{L}.block_sparse_moe.experts.{E}.w1.{P}", "layers.{L}.mlp.experts.{E}.gate_proj.{P}"),
    ("layers.{L}.block_sparse_moe.experts.{E}.w2.{P}", "layers.{L}.mlp.experts.{E}.down_proj.{P}"),
    ("layers.{L}.block_sparse_moe.experts.{E}.w3.{P}", "layers.{L}.mlp.experts.{E}.up_proj.{P}"),
))


class MixtralModel(MoeDecoderModel):
    config_class = MixtralConfig
    checkpoint_keys = MIXTRAL_KEYS

    @classmethod
    def make_mlp(cls, config: MixtralConfig, layer_idx: int) -> nn.Module:
        return SparseMoeBlock(config.hidden_size, config.intermediate_size, config.num_local_experts,
                              config.num_experts_per_tok, hidden_act=config.hidden_act, norm_topk_prob=True,
                              jitter_noise=config.router_jitter_noise)


class MixtralForCausalLM(MoeDecoderForCausalLM):
    config_class = MixtralConfig
    base_model_class = MixtralModel
    checkpoint_keys = MIXTRAL_KEYS

    @classmethod
    def router_shape(cls, config: MixtralConfig) -> tuple[int, int]:
        return config.num_local_experts, config.num_experts_per_tok
