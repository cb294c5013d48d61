"""CohereConfig: field names and defaults of transformers 4.45 (`layer_norm_eps`, `logit_scale`, `use_qk_norm`)."""
from __future__ import annotations

from typing import Any

from ...configuration_utils import PretrainedConfig
from ...modeling.rope import standardize_rope_scaling
from ..decoder_config import GlobalHeadsMixin


class CohereConfig(GlobalHeadsMixin, PretrainedConfig):
    model_type = "cohere"

    vocab_size: int = 256000
    hidden_size: int = 8192
    intermediate_size: int = 22528
    logit_scale: float = 0.0625  # logits are multiplied by it
    num_hidden_layers: int = 40
    num_attention_heads: int = 64
    num_key_value_heads: int | None = None  # None: num_attention_heads
    hidden_act: str = "silu"
    max_position_embeddings: int = 8192
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    use_cache: bool = True
    pad_token_id: int | list[int] | None = 0
    bos_token_id: int | list[int] | None = 5
    eos_token_id: int | list[int] | None = 255001
    tie_word_embeddings: bool = True
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    attention_bias: bool = False
    attention_dropout: float = 0.0
    use_qk_norm: bool = False  # per-head LayerNorms on queries and keys (Command R+)

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        self.check_heads_divide_hidden()
        standardize_rope_scaling(self)
