from .configuration_nemotron import NemotronConfig
from .modeling_nemotron import NemotronForCausalLM, NemotronModel

CONFIG_CLASS = NemotronConfig
MODEL_CLASSES = {"base": NemotronModel, "causal_lm": NemotronForCausalLM}
__all__ = ["NemotronConfig", "NemotronModel", "NemotronForCausalLM"]
