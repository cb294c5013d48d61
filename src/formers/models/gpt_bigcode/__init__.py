from .configuration_gpt_bigcode import GPTBigCodeConfig
from .modeling_gpt_bigcode import GPTBigCodeForCausalLM, GPTBigCodeModel

CONFIG_CLASS = GPTBigCodeConfig
MODEL_CLASSES = {"base": GPTBigCodeModel, "causal_lm": GPTBigCodeForCausalLM}
__all__ = ["GPTBigCodeConfig", "GPTBigCodeModel", "GPTBigCodeForCausalLM"]
