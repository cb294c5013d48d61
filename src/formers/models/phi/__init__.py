from .configuration_phi import PhiConfig
from .modeling_phi import PhiForCausalLM, PhiModel

CONFIG_CLASS = PhiConfig
MODEL_CLASSES = {"base": PhiModel, "causal_lm": PhiForCausalLM}
__all__ = ["PhiConfig", "PhiModel", "PhiForCausalLM"]
