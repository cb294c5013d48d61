"""GraniteMoE: Granite (its embedding, residual, attention and logits multipliers) with a sparse mixture of
experts in place of the MLP. Its router takes the top `num_experts_per_tok` logits, then a softmax over
those k (float32), and reports float32 router logits. Checkpoints stack the experts per layer:
`block_sparse_moe.input_linear.weight` [E, 2I, C] (each expert's [gate; up]), `output_linear.weight`
[E, C, I], router `block_sparse_moe.router.layer.weight`; formers keeps one fused `gate_up_proj` per expert."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from ...loading.key_map import Fused, KeyMap
from ...modeling.mlp import GatedMLP
from ...modeling.moe import MoeDecoderForCausalLM, MoeDecoderModel, SparseMoeBlock
from ..granite.modeling_granite import GraniteForCausalLM, GraniteModel
from .configuration_granitemoe import GraniteMoeConfig


def _unstack(tensor: torch.Tensor, config, fields) -> list[torch.Tensor]:
    return list(tensor.unbind(0))  # [E, out, in] -> E views [out, in]


def _stack(parts: list[torch.Tensor], config, fields) -> torch.Tensor:
    return torch.stack(parts)


@lru_cache(maxsize=None)
def granitemoe_keys(num_experts: int) -> KeyMap:
    """The checkpoint layout of a GraniteMoE model with `num_experts` experts per layer."""
    def per_expert(module: str) -> tuple[str, ...]:
        return tuple(f"layers.{{L}}.mlp.experts.{e}.{module}.weight" for e in range(num_experts))
    return KeyMap(
        renames=(("layers.{L}.block_sparse_moe.router.layer.weight", "layers.{L}.mlp.gate.weight"),),
        fused=(Fused("layers.{L}.block_sparse_moe.input_linear.weight", per_expert("gate_up_proj"), _unstack, _stack),
               Fused("layers.{L}.block_sparse_moe.output_linear.weight", per_expert("down_proj"), _unstack, _stack)))


class GraniteMoeBlock(SparseMoeBlock):
    """The shared block, reporting float32 router logits as 4.45's GraniteMoE does (its aux loss reads them)."""

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, router_logits = super().forward(hidden)
        return out, router_logits.float()


class _GraniteMoeLayout:
    config_class = GraniteMoeConfig
    reference_layer_kinds = {"mlp.experts.": "parameter"}

    @classmethod
    def key_map(cls, config: GraniteMoeConfig) -> KeyMap:
        return granitemoe_keys(config.num_local_experts)


class GraniteMoeModel(_GraniteMoeLayout, MoeDecoderModel, GraniteModel):
    @classmethod
    def make_mlp(cls, config: GraniteMoeConfig, layer_idx: int) -> nn.Module:
        size, act = config.intermediate_size, config.hidden_act
        return GraniteMoeBlock(config.hidden_size, size, config.num_local_experts, config.num_experts_per_tok,
                               hidden_act=act, norm_topk_prob=False, softmax_after_topk=True, float32_sum=True,
                               expert_factory=lambda: GatedMLP(config.hidden_size, size, act, fused=True))


class GraniteMoeForCausalLM(_GraniteMoeLayout, MoeDecoderForCausalLM, GraniteForCausalLM):
    base_model_class = GraniteMoeModel

    @classmethod
    def router_shape(cls, config: GraniteMoeConfig) -> tuple[int, int]:
        return config.num_local_experts, config.num_experts_per_tok
