from .configuration_jamba import JambaConfig
from .modeling_jamba import (
    HybridMambaAttentionDynamicCache,
    JambaForCausalLM,
    JambaModel,
    JambaPreTrainedModel,
)

CONFIG_CLASS = JambaConfig
MODEL_CLASSES = {"base": JambaModel, "causal_lm": JambaForCausalLM}
__all__ = ["HybridMambaAttentionDynamicCache", "JambaConfig", "JambaForCausalLM", "JambaModel", "JambaPreTrainedModel"]
