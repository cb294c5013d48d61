from ...cache.mamba import MambaCache
from .configuration_mamba import MambaConfig
from .modeling_mamba import MambaForCausalLM, MambaModel, MambaPreTrainedModel

CONFIG_CLASS = MambaConfig
MODEL_CLASSES = {"base": MambaModel, "causal_lm": MambaForCausalLM}
__all__ = ["MambaCache", "MambaConfig", "MambaForCausalLM", "MambaModel", "MambaPreTrainedModel"]
