"""Qwen2Config: field names and defaults of transformers 4.45."""
from __future__ import annotations

from typing import Any

from ...configuration_utils import PretrainedConfig
from ...modeling.rope import validate_rope_scaling


class Qwen2Config(PretrainedConfig):
    model_type = "qwen2"

    vocab_size: int = 151936
    hidden_size: int = 4096
    intermediate_size: int = 22016
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = 32
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    use_sliding_window: bool = False
    sliding_window: int | None = 4096
    max_window_layers: int = 28
    attention_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if not self.use_sliding_window:  # as 4.45: the window only exists when switched on
            self.sliding_window = None
        if self.rope_scaling is not None and "type" in self.rope_scaling:
            self.rope_scaling["rope_type"] = self.rope_scaling["type"]
        validate_rope_scaling(self)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        """Qwen2 windows only the layers from `max_window_layers` on."""
        return self.sliding_window if layer_idx >= self.max_window_layers else None
