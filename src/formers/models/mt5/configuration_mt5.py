"""MT5Config: T5's fields with mT5's defaults (gated-GELU, untied embeddings, 250k vocabulary)."""
from ..t5.configuration_t5 import T5Config


class MT5Config(T5Config):
    model_type = "mt5"
    vocab_size: int = 250112
    d_ff: int = 1024
    num_layers: int = 8
    num_heads: int = 6
    feed_forward_proj: str = "gated-gelu"
    tie_word_embeddings: bool = False
    decoder_start_token_id: int | None = 0
    tokenizer_class: str | None = "T5Tokenizer"
