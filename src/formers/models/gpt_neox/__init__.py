from .configuration_gpt_neox import GPTNeoXConfig
from .modeling_gpt_neox import GPTNeoXForCausalLM, GPTNeoXModel

CONFIG_CLASS = GPTNeoXConfig
MODEL_CLASSES = {"base": GPTNeoXModel, "causal_lm": GPTNeoXForCausalLM}
__all__ = ["GPTNeoXConfig", "GPTNeoXModel", "GPTNeoXForCausalLM"]
