from .configuration_bart import BartConfig
from .modeling_bart import BartForCausalLM, BartForConditionalGeneration, BartModel

CONFIG_CLASS = BartConfig
MODEL_CLASSES = {"base": BartModel, "seq2seq_lm": BartForConditionalGeneration, "causal_lm": BartForCausalLM}
__all__ = ["BartForCausalLM", "BartConfig", "BartForConditionalGeneration", "BartModel"]
