from .configuration_llama import LlamaConfig
from .modeling_llama import LlamaForCausalLM, LlamaModel

CONFIG_CLASS = LlamaConfig
MODEL_CLASSES = {"base": LlamaModel, "causal_lm": LlamaForCausalLM}
__all__ = ["LlamaConfig", "LlamaModel", "LlamaForCausalLM"]
