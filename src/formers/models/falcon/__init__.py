from .configuration_falcon import FalconConfig
from .modeling_falcon import FalconForCausalLM, FalconModel

CONFIG_CLASS = FalconConfig
MODEL_CLASSES = {"base": FalconModel, "causal_lm": FalconForCausalLM}
__all__ = ["FalconConfig", "FalconModel", "FalconForCausalLM"]
