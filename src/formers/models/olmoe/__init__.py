from .configuration_olmoe import OlmoeConfig
from .modeling_olmoe import OlmoeForCausalLM, OlmoeModel

CONFIG_CLASS = OlmoeConfig
MODEL_CLASSES = {"base": OlmoeModel, "causal_lm": OlmoeForCausalLM}
__all__ = ["OlmoeConfig", "OlmoeModel", "OlmoeForCausalLM"]
