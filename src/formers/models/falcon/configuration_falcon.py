"""FalconConfig: field names and defaults of transformers 4.45 (one class for three layouts)."""
from __future__ import annotations

from typing import Any

from ...configuration_utils import PretrainedConfig
from ...modeling.rope import validate_rope_scaling


class FalconConfig(PretrainedConfig):
    model_type = "falcon"
    attribute_map = {"n_embed": "hidden_size"}

    vocab_size: int = 65024
    hidden_size: int = 4544
    num_hidden_layers: int = 32
    num_attention_heads: int = 71
    num_ln_in_parallel_attn: int | None = None  # None: 2 with the new decoder architecture
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    num_kv_heads: int | None = None  # None: num_attention_heads
    alibi: bool = False
    new_decoder_architecture: bool = False  # Falcon-40B/180B: grouped KV heads, two norms per layer
    multi_query: bool = True  # Falcon-7B: one KV head (ignored with the new decoder architecture)
    parallel_attn: bool = True
    bias: bool = False
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    bos_token_id: int | list[int] | None = 11
    eos_token_id: int | list[int] | None = 11
    ffn_hidden_size: int | None = None  # None: 4 * hidden_size
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.num_kv_heads is None:
            self.num_kv_heads = self.num_attention_heads
        if self.ffn_hidden_size is None:
            self.ffn_hidden_size = 4 * self.hidden_size
        if self.rope_scaling is not None and "type" in self.rope_scaling:
            self.rope_scaling["rope_type"] = self.rope_scaling["type"]
        validate_rope_scaling(self)

    # --- derived values the shared decoder reads ---------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary(self) -> bool:
        return not self.alibi

    @property
    def num_key_value_heads(self) -> int:
        if self.new_decoder_architecture:
            return self.num_kv_heads
        return 1 if self.multi_query else self.num_attention_heads

    @property
    def norms_in_parallel_block(self) -> int:
        """Norms feeding the parallel attention/MLP block (1 or 2)."""
        if self.num_ln_in_parallel_attn is not None:
            return self.num_ln_in_parallel_attn
        return 2 if self.new_decoder_architecture else 1

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        return None
