"""FalconMamba: Mamba whose mixers RMS-normalise B, C and dt (no weight, eps `mixer_rms_eps`) before the scan;
everything else, checkpoint keys included, is Mamba's."""
from __future__ import annotations

from ..mamba.modeling_mamba import (
    MambaForCausalLM,
    MambaMixer,
    MambaModel,
    MambaPreTrainedModel,
)
from .configuration_falcon_mamba import FalconMambaConfig


class FalconMambaPreTrainedModel(MambaPreTrainedModel):
    config_class = FalconMambaConfig


class FalconMambaModel(FalconMambaPreTrainedModel, MambaModel):
    @classmethod
    def make_mixer(cls, config: FalconMambaConfig, layer_idx: int) -> MambaMixer:
        return MambaMixer(config, layer_idx, rms_eps=config.mixer_rms_eps)


class FalconMambaForCausalLM(FalconMambaPreTrainedModel, MambaForCausalLM):
    base_model_class = FalconMambaModel
