from .configuration_gemma2 import Gemma2Config
from .modeling_gemma2 import Gemma2ForCausalLM, Gemma2Model

CONFIG_CLASS = Gemma2Config
MODEL_CLASSES = {"base": Gemma2Model, "causal_lm": Gemma2ForCausalLM}
__all__ = ["Gemma2Config", "Gemma2Model", "Gemma2ForCausalLM"]
