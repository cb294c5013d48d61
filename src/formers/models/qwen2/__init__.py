from .configuration_qwen2 import Qwen2Config
from .modeling_qwen2 import Qwen2ForCausalLM, Qwen2Model

CONFIG_CLASS = Qwen2Config
MODEL_CLASSES = {"base": Qwen2Model, "causal_lm": Qwen2ForCausalLM}
__all__ = ["Qwen2Config", "Qwen2Model", "Qwen2ForCausalLM"]
