from .configuration_qwen2_moe import Qwen2MoeConfig
from .modeling_qwen2_moe import Qwen2MoeForCausalLM, Qwen2MoeModel

CONFIG_CLASS = Qwen2MoeConfig
MODEL_CLASSES = {"base": Qwen2MoeModel, "causal_lm": Qwen2MoeForCausalLM}
__all__ = ["Qwen2MoeConfig", "Qwen2MoeModel", "Qwen2MoeForCausalLM"]
