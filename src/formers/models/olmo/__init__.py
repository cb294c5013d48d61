from .configuration_olmo import OlmoConfig
from .modeling_olmo import OlmoForCausalLM, OlmoModel

CONFIG_CLASS = OlmoConfig
MODEL_CLASSES = {"base": OlmoModel, "causal_lm": OlmoForCausalLM}
__all__ = ["OlmoConfig", "OlmoModel", "OlmoForCausalLM"]
