"""Starcoder2Config: field names and defaults of transformers 4.45."""
from __future__ import annotations

from typing import Any

from ...configuration_utils import PretrainedConfig
from ...modeling.rope import standardize_rope_scaling
from ..decoder_config import GlobalHeadsMixin


class Starcoder2Config(GlobalHeadsMixin, PretrainedConfig):
    model_type = "starcoder2"

    vocab_size: int = 49152
    hidden_size: int = 3072
    intermediate_size: int = 12288
    num_hidden_layers: int = 30
    num_attention_heads: int = 24
    num_key_value_heads: int = 2
    hidden_act: str = "gelu_pytorch_tanh"
    max_position_embeddings: int = 4096
    initializer_range: float = 0.018042
    norm_epsilon: float = 1e-5
    use_cache: bool = True
    bos_token_id: int | list[int] | None = 50256
    eos_token_id: int | list[int] | None = 50256
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    sliding_window: int | None = None
    attention_dropout: float = 0.0
    residual_dropout: float = 0.0  # training only, as the embedding dropout
    embedding_dropout: float = 0.0
    use_bias: bool = True  # on every linear layer but the LM head

    def __post_init__(self) -> None:
        self.check_heads_divide_hidden()
        standardize_rope_scaling(self)
