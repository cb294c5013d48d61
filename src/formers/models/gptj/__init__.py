from .configuration_gptj import GPTJConfig
from .modeling_gptj import GPTJForCausalLM, GPTJModel

CONFIG_CLASS = GPTJConfig
MODEL_CLASSES = {"base": GPTJModel, "causal_lm": GPTJForCausalLM}
__all__ = ["GPTJConfig", "GPTJModel", "GPTJForCausalLM"]
