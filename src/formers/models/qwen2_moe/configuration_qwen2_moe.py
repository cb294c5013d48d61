"""Qwen2MoeConfig: Qwen2's fields (sliding window rules included) plus the MoE ones, defaults of 4.45."""
from __future__ import annotations

from ..qwen2.configuration_qwen2 import Qwen2Config


class Qwen2MoeConfig(Qwen2Config):
    model_type = "qwen2_moe"

    hidden_size = 2048
    intermediate_size = 5632  # the dense MLP's (layers in mlp_only_layers or off the sparse step)
    num_hidden_layers = 24
    num_attention_heads = 16
    num_key_value_heads = 16
    decoder_sparse_step: int = 1
    moe_intermediate_size: int = 1408
    shared_expert_intermediate_size: int = 5632
    num_experts_per_tok: int = 4
    num_experts: int = 60
    norm_topk_prob: bool = False
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001
    mlp_only_layers: list[int] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mlp_only_layers is None:
            self.mlp_only_layers = []

    def is_moe_layer(self, layer_idx: int) -> bool:
        """Layer `layer_idx` has the sparse block (else the dense MLP): every `decoder_sparse_step`-th layer
        (counting from 1) not listed in `mlp_only_layers`, when there are experts."""
        return (layer_idx not in self.mlp_only_layers and self.num_experts > 0
                and (layer_idx + 1) % self.decoder_sparse_step == 0)
