from .configuration_t5 import T5Config
from .modeling_t5 import T5EncoderModel, T5ForConditionalGeneration, T5Model

CONFIG_CLASS = T5Config
MODEL_CLASSES = {"base": T5Model, "seq2seq_lm": T5ForConditionalGeneration}
__all__ = ["T5Config", "T5EncoderModel", "T5ForConditionalGeneration", "T5Model"]
