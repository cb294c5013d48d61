from ...cache.mamba2 import Mamba2Cache
from .configuration_mamba2 import Mamba2Config
from .modeling_mamba2 import Mamba2ForCausalLM, Mamba2Model, Mamba2PreTrainedModel

CONFIG_CLASS = Mamba2Config
MODEL_CLASSES = {"base": Mamba2Model, "causal_lm": Mamba2ForCausalLM}
__all__ = ["Mamba2Cache", "Mamba2Config", "Mamba2ForCausalLM", "Mamba2Model", "Mamba2PreTrainedModel"]
