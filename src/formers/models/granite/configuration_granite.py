"""GraniteConfig: field names and defaults of transformers 4.45 (Llama's, plus four scalar multipliers)."""
from __future__ import annotations

from typing import Any

from ..decoder_config import DecoderConfig


class GraniteConfig(DecoderConfig):
    model_type = "granite"

    bos_token_id: int | list[int] | None = 1
    eos_token_id: int | list[int] | None = 2
    rope_scaling: dict[str, Any] | None = None
    attention_bias: bool = False
    mlp_bias: bool = False
    embedding_multiplier: float = 1.0  # token embeddings are multiplied by it
    logits_scaling: float = 1.0  # logits are divided by it
    residual_multiplier: float = 1.0  # each attention and MLP output is multiplied by it before the residual add
    attention_multiplier: float = 1.0  # the attention score scale (in place of 1/sqrt(head_dim))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads
