"""mT5: T5's architecture with mT5's config defaults (gated-GELU, untied embeddings, 250k vocabulary)."""
from ..t5.configuration_t5 import T5Config
from ..t5.modeling_t5 import T5ForConditionalGeneration, T5Model


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


class MT5Model(T5Model):
    config_class = MT5Config


class MT5ForConditionalGeneration(T5ForConditionalGeneration):
    config_class = MT5Config
    base_model_class = MT5Model


CONFIG_CLASS = MT5Config
MODEL_CLASSES = {"base": MT5Model, "seq2seq_lm": MT5ForConditionalGeneration}
__all__ = ["MT5Config", "MT5ForConditionalGeneration", "MT5Model"]
