"""MistralConfig: field names and defaults of transformers 4.45."""
from __future__ import annotations

from ..decoder_config import DecoderConfig


class MistralConfig(DecoderConfig):
    model_type = "mistral"

    intermediate_size = 14336
    num_key_value_heads = 8
    max_position_embeddings = 4096 * 32
    bos_token_id: int | list[int] | None = 1
    eos_token_id: int | list[int] | None = 2
    head_dim: int | None = None
    sliding_window: int | None = 4096

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
