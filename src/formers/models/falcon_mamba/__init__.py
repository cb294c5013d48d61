from .configuration_falcon_mamba import FalconMambaConfig
from .modeling_falcon_mamba import (
    FalconMambaForCausalLM,
    FalconMambaModel,
    FalconMambaPreTrainedModel,
)

CONFIG_CLASS = FalconMambaConfig
MODEL_CLASSES = {"base": FalconMambaModel, "causal_lm": FalconMambaForCausalLM}
__all__ = ["FalconMambaConfig", "FalconMambaForCausalLM", "FalconMambaModel", "FalconMambaPreTrainedModel"]
