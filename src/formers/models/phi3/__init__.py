from .configuration_phi3 import Phi3Config
from .modeling_phi3 import Phi3ForCausalLM, Phi3Model

CONFIG_CLASS = Phi3Config
MODEL_CLASSES = {"base": Phi3Model, "causal_lm": Phi3ForCausalLM}
__all__ = ["Phi3Config", "Phi3Model", "Phi3ForCausalLM"]
