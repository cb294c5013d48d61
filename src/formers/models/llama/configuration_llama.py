"""LlamaConfig: field names and defaults of transformers 4.45."""
from __future__ import annotations

from typing import Any

from ..decoder_config import DecoderConfig


class LlamaConfig(DecoderConfig):
    model_type = "llama"

    bos_token_id: int | list[int] | None = 1
    eos_token_id: int | list[int] | None = 2
    pretraining_tp: int = 1
    rope_scaling: dict[str, Any] | None = None
    attention_bias: bool = False
    mlp_bias: bool = False
    head_dim: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
