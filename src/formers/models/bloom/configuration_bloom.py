"""BloomConfig: field names and defaults of transformers 4.45."""
from __future__ import annotations

from ...configuration_utils import PretrainedConfig


class BloomConfig(PretrainedConfig):
    model_type = "bloom"
    attribute_map = {"num_hidden_layers": "n_layer", "num_attention_heads": "n_head", "n_embed": "hidden_size"}

    vocab_size: int = 250880
    hidden_size: int = 64
    n_layer: int = 2
    n_head: int = 8
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    bos_token_id: int | list[int] | None = 1
    eos_token_id: int | list[int] | None = 2
    apply_residual_connection_post_layernorm: bool = False
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    pretraining_tp: int = 1  # Megatron's tensor-parallel degree at training; the matmuls are not split here
    slow_but_exact: bool = False

    # --- the names the shared decoder reads ---------------------------------------------------------
    @property
    def num_key_value_heads(self) -> int:
        return self.n_head

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_head

    @property
    def max_position_embeddings(self) -> None:
        return None  # ALiBi: no position limit

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        return None
