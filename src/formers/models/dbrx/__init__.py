from .configuration_dbrx import DbrxConfig
from .modeling_dbrx import DbrxForCausalLM, DbrxModel

CONFIG_CLASS = DbrxConfig
MODEL_CLASSES = {"base": DbrxModel, "causal_lm": DbrxForCausalLM}
__all__ = ["DbrxConfig", "DbrxModel", "DbrxForCausalLM"]
