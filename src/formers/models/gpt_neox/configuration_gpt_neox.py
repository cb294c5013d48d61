"""GPTNeoXConfig: field names and defaults of transformers 4.45."""
from __future__ import annotations

from typing import Any

from ...configuration_utils import PretrainedConfig
from ...modeling.rope import standardize_rope_scaling
from ..decoder_config import GlobalHeadsMixin


class GPTNeoXConfig(GlobalHeadsMixin, PretrainedConfig):
    model_type = "gpt_neox"

    vocab_size: int = 50432
    hidden_size: int = 6144
    num_hidden_layers: int = 44
    num_attention_heads: int = 64
    intermediate_size: int = 24576
    hidden_act: str = "gelu"
    rotary_pct: float = 0.25  # fraction of each head that rotates
    rotary_emb_base: int | float = 10000
    partial_rotary_factor: float = 0.25  # = rotary_pct (4.45 writes both; rotary_pct wins)
    rope_theta: int | float = 10000  # = rotary_emb_base (likewise)
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0  # training only: after the embeddings and each branch
    classifier_dropout: float = 0.1
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5
    use_cache: bool = True
    bos_token_id: int | list[int] | None = 0
    eos_token_id: int | list[int] | None = 2
    tie_word_embeddings: bool = False
    use_parallel_residual: bool = True  # x + attn(ln1(x)) + mlp(ln2(x)); else two sequential residuals
    rope_scaling: dict[str, Any] | None = None
    attention_bias: bool = True

    def __post_init__(self) -> None:
        self.partial_rotary_factor = self.rotary_pct
        self.rope_theta = self.rotary_emb_base
        self.check_heads_divide_hidden()
        standardize_rope_scaling(self)

    # --- the names the shared decoder reads ---------------------------------------------------------
    @property
    def num_key_value_heads(self) -> int:
        return self.num_attention_heads
