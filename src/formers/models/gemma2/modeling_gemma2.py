"""Gemma2: Gemma with four norms per layer ("sandwich": each branch normed before and after), attention
scores scaled by query_pre_attn_scalar ** -0.5 and softcapped, local attention on even layers, and
softcapped final logits. Eager attention unless SDPA is asked for, as in 4.45: 4.45's SDPA path drops
the score softcap, and so does formers' when asked for SDPA."""
from __future__ import annotations

from dataclasses import replace

import torch

from ...modeling.attention import AttentionSpec
from ..gemma.modeling_gemma import GemmaForCausalLM, GemmaModel
from .configuration_gemma2 import Gemma2Config


def softcap(values: torch.Tensor, cap: float | None) -> torch.Tensor:
    """cap * tanh(values / cap), in values' dtype (None: unchanged)."""
    return values if cap is None else torch.tanh(values / cap) * cap


class Gemma2Model(GemmaModel):
    config_class = Gemma2Config
    residual = "sandwich"
    default_attn_implementation = "eager"

    @staticmethod
    def layer_spec(config: Gemma2Config, layer_idx: int) -> AttentionSpec:
        return replace(GemmaModel.layer_spec(config, layer_idx),
                       sliding_window=config.layer_sliding_window(layer_idx),
                       scale=config.query_pre_attn_scalar ** -0.5,
                       softcap=config.attn_logit_softcapping, sdpa_ignores_softcap=True)


class Gemma2ForCausalLM(GemmaForCausalLM):
    config_class = Gemma2Config
    base_model_class = Gemma2Model
    default_attn_implementation = "eager"

    def final_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return softcap(logits, self.config.final_logit_softcapping)
