from .configuration_gemma import GemmaConfig
from .modeling_gemma import GemmaForCausalLM, GemmaModel

CONFIG_CLASS = GemmaConfig
MODEL_CLASSES = {"base": GemmaModel, "causal_lm": GemmaForCausalLM}
__all__ = ["GemmaConfig", "GemmaModel", "GemmaForCausalLM"]
