from .configuration_gpt2 import GPT2Config
from .modeling_gpt2 import GPT2LMHeadModel, GPT2Model

CONFIG_CLASS = GPT2Config
MODEL_CLASSES = {"base": GPT2Model, "causal_lm": GPT2LMHeadModel}
__all__ = ["GPT2Config", "GPT2Model", "GPT2LMHeadModel"]
