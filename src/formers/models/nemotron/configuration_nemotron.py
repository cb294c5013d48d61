"""NemotronConfig: field names and defaults of transformers 4.45 (`norm_eps`, an explicit `head_dim`,
`partial_rotary_factor`, and `num_key_value_heads` left None when not given, as 4.45 leaves it)."""
from __future__ import annotations

from ...configuration_utils import PretrainedConfig


class NemotronConfig(PretrainedConfig):
    model_type = "nemotron"

    vocab_size: int = 256000
    hidden_size: int = 6144
    intermediate_size: int = 24576
    num_hidden_layers: int = 32
    num_attention_heads: int = 48
    head_dim: int | None = None  # None: hidden_size // num_attention_heads, filled in at construction
    num_key_value_heads: int | None = None  # 4.45.2 keeps None here and then cannot build the model: set it
    hidden_act: str = "relu2"
    max_position_embeddings: int = 4096
    initializer_range: float = 0.0134
    norm_eps: float = 1e-5
    use_cache: bool = True
    bos_token_id: int | list[int] | None = 2
    eos_token_id: int | list[int] | None = 3
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 0.5  # the first half of each head rotates
    attention_bias: bool = False
    attention_dropout: float = 0.0
    mlp_bias: bool = False

    def __post_init__(self) -> None:
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        return None
