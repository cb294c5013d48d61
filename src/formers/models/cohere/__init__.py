from .configuration_cohere import CohereConfig
from .modeling_cohere import CohereForCausalLM, CohereModel

CONFIG_CLASS = CohereConfig
MODEL_CLASSES = {"base": CohereModel, "causal_lm": CohereForCausalLM}
__all__ = ["CohereConfig", "CohereModel", "CohereForCausalLM"]
