from .configuration_starcoder2 import Starcoder2Config
from .modeling_starcoder2 import Starcoder2ForCausalLM, Starcoder2Model

CONFIG_CLASS = Starcoder2Config
MODEL_CLASSES = {"base": Starcoder2Model, "causal_lm": Starcoder2ForCausalLM}
__all__ = ["Starcoder2Config", "Starcoder2Model", "Starcoder2ForCausalLM"]
