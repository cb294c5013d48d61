"""Gemma2Config: Gemma's fields plus the score scale, the two softcaps, the local window of the even
layers and the default cache; names and defaults of transformers 4.45."""
from __future__ import annotations

from typing import ClassVar

from ..gemma.configuration_gemma import GemmaConfig


class Gemma2Config(GemmaConfig):
    model_type = "gemma2"

    hidden_act: ClassVar[None] = None  # 4.45's Gemma2Config has no such field: the MLP reads hidden_activation
    hidden_activation: str | None = "gelu_pytorch_tanh"
    query_pre_attn_scalar: float = 224  # scores are scaled by query_pre_attn_scalar ** -0.5, not head_dim ** -0.5
    sliding_window: int | None = 4096  # window of the local (even) layers
    final_logit_softcapping: float | None = 30.0  # logits -> cap * tanh(logits / cap); None: off
    attn_logit_softcapping: float | None = 50.0  # scores -> cap * tanh(scores / cap); None: off
    cache_implementation: str | None = "hybrid"  # what generate() decodes with unless told otherwise

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        """Even layers attend locally (the last `sliding_window` positions), odd layers globally."""
        return self.sliding_window if layer_idx % 2 == 0 else None
