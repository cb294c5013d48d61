"""FalconMamba: Mamba whose mixers RMS-normalise B, C and dt (no weight, eps `mixer_rms_eps`) before the scan;
everything else, checkpoint keys included, is Mamba's."""
from __future__ import annotations

from ..mamba.modeling_mamba import MambaForCausalLM, MambaModel, MambaPreTrainedModel
from .configuration_falcon_mamba import FalconMambaConfig


class FalconMambaPreTrainedModel(MambaPreTrainedModel):
    config_class = FalconMambaConfig
    _no_split_modules = ["FalconMambaBlock"]


class FalconMambaModel(FalconMambaPreTrainedModel, MambaModel):
    @classmethod
    def mixer_rms_eps(cls, config: FalconMambaConfig) -> float:
        return config.mixer_rms_eps


class FalconMambaForCausalLM(FalconMambaPreTrainedModel, MambaForCausalLM):
    base_model_class = FalconMambaModel
