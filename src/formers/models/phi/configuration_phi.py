"""PhiConfig: field names and defaults of transformers 4.45 (phi-1, phi-1.5, phi-2)."""
from __future__ import annotations

from typing import Any

from ...configuration_utils import PretrainedConfig
from ...modeling.rope import standardize_rope_scaling
from ..decoder_config import GlobalHeadsMixin


class PhiConfig(GlobalHeadsMixin, PretrainedConfig):
    model_type = "phi"

    vocab_size: int = 51200
    hidden_size: int = 2048
    intermediate_size: int = 8192
    num_hidden_layers: int = 24
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # None: num_attention_heads
    resid_pdrop: float = 0.0  # training only, as the embedding dropout
    embd_pdrop: float = 0.0
    attention_dropout: float = 0.0
    hidden_act: str = "gelu_new"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    use_cache: bool = True
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    partial_rotary_factor: float = 0.5  # fraction of each head that rotates
    qk_layernorm: bool = False  # a LayerNorm over head_dim on every query and key head
    bos_token_id: int | list[int] | None = 1
    eos_token_id: int | list[int] | None = 2

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        self.check_heads_divide_hidden()
        standardize_rope_scaling(self)
