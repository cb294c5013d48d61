from .configuration_mistral import MistralConfig
from .modeling_mistral import MistralForCausalLM, MistralModel

CONFIG_CLASS = MistralConfig
MODEL_CLASSES = {"base": MistralModel, "causal_lm": MistralForCausalLM}
__all__ = ["MistralConfig", "MistralModel", "MistralForCausalLM"]
