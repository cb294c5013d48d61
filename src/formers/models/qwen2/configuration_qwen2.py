"""Qwen2Config: field names and defaults of transformers 4.45."""
from __future__ import annotations

from typing import Any

from ..decoder_config import DecoderConfig


class Qwen2Config(DecoderConfig):
    model_type = "qwen2"

    vocab_size = 151936
    intermediate_size = 22016
    num_key_value_heads = 32
    max_position_embeddings = 32768
    rope_scaling: dict[str, Any] | None = None
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    max_window_layers: int = 28

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.use_sliding_window:  # as 4.45: the window only exists when switched on
            self.sliding_window = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        """Qwen2 windows only the layers from `max_window_layers` on."""
        return self.sliding_window if layer_idx >= self.max_window_layers else None
