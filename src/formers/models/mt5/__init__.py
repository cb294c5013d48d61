"""mT5: T5's architecture with mT5's config defaults (gated-GELU, untied embeddings, 250k vocabulary)."""
from .configuration_mt5 import MT5Config
from .modeling_mt5 import MT5EncoderModel, MT5ForConditionalGeneration, MT5Model
from ..t5.tokenization_t5 import MT5Tokenizer, MT5TokenizerFast  # 4.45: the T5 classes under mT5 names

CONFIG_CLASS = MT5Config
MODEL_CLASSES = {"base": MT5Model, "seq2seq_lm": MT5ForConditionalGeneration}
__all__ = ["MT5Config", "MT5EncoderModel", "MT5ForConditionalGeneration", "MT5Model", "MT5Tokenizer",
           "MT5TokenizerFast"]
