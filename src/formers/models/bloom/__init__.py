from .configuration_bloom import BloomConfig
from .modeling_bloom import BloomForCausalLM, BloomModel

CONFIG_CLASS = BloomConfig
MODEL_CLASSES = {"base": BloomModel, "causal_lm": BloomForCausalLM}
__all__ = ["BloomConfig", "BloomModel", "BloomForCausalLM"]
