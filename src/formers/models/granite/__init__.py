from .configuration_granite import GraniteConfig
from .modeling_granite import GraniteForCausalLM, GraniteModel

CONFIG_CLASS = GraniteConfig
MODEL_CLASSES = {"base": GraniteModel, "causal_lm": GraniteForCausalLM}
__all__ = ["GraniteConfig", "GraniteModel", "GraniteForCausalLM"]
