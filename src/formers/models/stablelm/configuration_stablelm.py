"""StableLmConfig: field names and defaults of transformers 4.45 (`layer_norm_eps`, `use_qkv_bias`,
`qk_layernorm`, `use_parallel_residual`, `partial_rotary_factor`)."""
from __future__ import annotations

from typing import Any

from ...configuration_utils import PretrainedConfig
from ...modeling.rope import standardize_rope_scaling
from ..decoder_config import GlobalHeadsMixin


class StableLmConfig(GlobalHeadsMixin, PretrainedConfig):
    model_type = "stablelm"

    vocab_size: int = 50304
    intermediate_size: int = 6912
    hidden_size: int = 2560
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    hidden_act: str = "silu"
    max_position_embeddings: int = 4096
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    use_cache: bool = True
    tie_word_embeddings: bool = False
    rope_theta: float = 10000
    rope_scaling: dict[str, Any] | None = None
    use_qkv_bias: bool = False  # biases on q/k/v (StableLM-2-1.6B); o_proj never has one
    qk_layernorm: bool = False  # one LayerNorm (no bias) per query head and per key head (StableLM-2-12B)
    use_parallel_residual: bool = False  # attention and MLP off one norm, summed (StableLM-2-12B)
    hidden_dropout: float = 0.0  # training only
    attention_dropout: float = 0.0
    partial_rotary_factor: float = 0.25  # the first quarter of each head rotates
    bos_token_id: int | list[int] | None = 0
    eos_token_id: int | list[int] | None = 0

    def __post_init__(self) -> None:
        self.check_heads_divide_hidden()
        standardize_rope_scaling(self)
