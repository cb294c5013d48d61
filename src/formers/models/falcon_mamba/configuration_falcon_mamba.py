"""FalconMambaConfig: MambaConfig's fields plus `mixer_rms_eps` (4.45 defaults)."""
from __future__ import annotations

from ..mamba.configuration_mamba import MambaConfig


class FalconMambaConfig(MambaConfig):
    model_type = "falcon_mamba"

    mixer_rms_eps: float = 1e-6  # eps of the weightless RMS normalisation of B, C and dt in every mixer
