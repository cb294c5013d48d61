from .configuration_granitemoe import GraniteMoeConfig
from .modeling_granitemoe import GraniteMoeForCausalLM, GraniteMoeModel

CONFIG_CLASS = GraniteMoeConfig
MODEL_CLASSES = {"base": GraniteMoeModel, "causal_lm": GraniteMoeForCausalLM}
__all__ = ["GraniteMoeConfig", "GraniteMoeModel", "GraniteMoeForCausalLM"]
