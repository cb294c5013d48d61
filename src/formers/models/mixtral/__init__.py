from .configuration_mixtral import MixtralConfig
from .modeling_mixtral import MixtralForCausalLM, MixtralModel

CONFIG_CLASS = MixtralConfig
MODEL_CLASSES = {"base": MixtralModel, "causal_lm": MixtralForCausalLM}
__all__ = ["MixtralConfig", "MixtralModel", "MixtralForCausalLM"]
