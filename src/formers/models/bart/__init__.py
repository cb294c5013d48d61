from .configuration_bart import BartConfig
from .modeling_bart import BartForConditionalGeneration, BartModel

CONFIG_CLASS = BartConfig
MODEL_CLASSES = {"base": BartModel, "seq2seq_lm": BartForConditionalGeneration}
__all__ = ["BartConfig", "BartForConditionalGeneration", "BartModel"]
