"""GPTJConfig: field names (n_embd, n_head, ...) and defaults of transformers 4.45."""
from __future__ import annotations

from ...configuration_utils import PretrainedConfig


class GPTJConfig(PretrainedConfig):
    model_type = "gptj"
    attribute_map = {"max_position_embeddings": "n_positions", "hidden_size": "n_embd",
                     "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"}

    vocab_size: int = 50400
    n_positions: int = 2048
    n_embd: int = 4096
    n_layer: int = 28
    n_head: int = 16
    rotary_dim: int | None = 64  # leading dims of each head that rotate; None: n_embd (one head only)
    n_inner: int | None = None  # None: 4 * n_embd
    activation_function: str = "gelu_new"
    resid_pdrop: float = 0.0  # training only, as embd_pdrop
    embd_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02
    use_cache: bool = True
    bos_token_id: int | list[int] | None = 50256
    eos_token_id: int | list[int] | None = 50256
    tie_word_embeddings: bool = False

    # --- the names the shared decoder reads ---------------------------------------------------------
    @property
    def num_key_value_heads(self) -> int:
        return self.n_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def intermediate_size(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def attention_dropout(self) -> float:
        return self.attn_pdrop

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        return None
