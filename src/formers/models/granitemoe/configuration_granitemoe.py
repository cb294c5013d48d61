"""GraniteMoeConfig: field names and defaults of transformers 4.45: Granite's (its four multipliers), without
`mlp_bias`, plus `num_local_experts` experts of which each token uses `num_experts_per_tok`."""
from __future__ import annotations

from typing import ClassVar

from ..granite.configuration_granite import GraniteConfig


class GraniteMoeConfig(GraniteConfig):
    model_type = "granitemoe"

    mlp_bias: ClassVar[bool] = False  # not a GraniteMoe field: its experts have no biases
    num_local_experts: int = 8
    num_experts_per_tok: int = 2
    output_router_logits: bool = False
    router_aux_loss_coef: float = 0.001
