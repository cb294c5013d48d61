"""GemmaConfig: field names and defaults of transformers 4.45."""
from __future__ import annotations

from ..decoder_config import DecoderConfig


class GemmaConfig(DecoderConfig):
    model_type = "gemma"

    vocab_size = 256000
    hidden_size = 3072
    intermediate_size = 24576
    num_hidden_layers = 28
    num_attention_heads = 16
    num_key_value_heads = 16
    head_dim: int = 256
    hidden_act = "gelu_pytorch_tanh"
    hidden_activation: str | None = None  # what the MLP uses; None means gelu_pytorch_tanh (hidden_act is ignored)
    max_position_embeddings = 8192
    pad_token_id: int | list[int] | None = 0
    eos_token_id: int | list[int] | None = 1
    bos_token_id: int | list[int] | None = 2
    tie_word_embeddings = True
    attention_bias: bool = False

    @property
    def mlp_activation(self) -> str:
        return self.hidden_activation or "gelu_pytorch_tanh"
