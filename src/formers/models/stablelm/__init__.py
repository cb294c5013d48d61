from .configuration_stablelm import StableLmConfig
from .modeling_stablelm import StableLmForCausalLM, StableLmModel

CONFIG_CLASS = StableLmConfig
MODEL_CLASSES = {"base": StableLmModel, "causal_lm": StableLmForCausalLM}
__all__ = ["StableLmConfig", "StableLmModel", "StableLmForCausalLM"]
