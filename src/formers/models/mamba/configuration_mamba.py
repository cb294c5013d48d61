"""MambaConfig: field names and defaults of transformers 4.45 (mamba-130m's shape)."""
from __future__ import annotations

import math

from ...configuration_utils import PretrainedConfig
from ...errors import ConfigError


class StateSpaceConfigMixin:
    """What Mamba and Mamba2 configs share: 4.45's "auto" time-step rank and no position limit."""

    def resolve_time_step_rank(self) -> None:
        if self.time_step_rank == "auto":
            self.time_step_rank = math.ceil(self.hidden_size / 16)
        elif isinstance(self.time_step_rank, str):
            raise ConfigError(f"{type(self).__name__} field 'time_step_rank': expected an int or 'auto', "
                              f"got {self.time_step_rank!r}")

    @property
    def max_position_embeddings(self) -> None:
        """No positional limit: a state-space model reads no positions (generate() asks every config)."""
        return None


class MambaConfig(StateSpaceConfigMixin, PretrainedConfig):
    model_type = "mamba"

    vocab_size: int = 50280
    hidden_size: int = 768
    state_size: int = 16
    num_hidden_layers: int = 32
    layer_norm_epsilon: float = 1e-5
    pad_token_id: int | list[int] | None = 0
    bos_token_id: int | list[int] | None = 0
    eos_token_id: int | list[int] | None = 0
    expand: int | float = 2
    conv_kernel: int = 4
    use_bias: bool = False
    use_conv_bias: bool = True
    hidden_act: str = "silu"
    initializer_range: float = 0.1
    residual_in_fp32: bool = True
    time_step_rank: int | str = "auto"  # "auto": ceil(hidden_size / 16), resolved on construction as 4.45
    time_step_scale: float = 1.0
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_init_scheme: str = "random"
    time_step_floor: float = 1e-4
    rescale_prenorm_residual: bool = False
    use_cache: bool = True
    use_mambapy: bool = False  # 4.45's optional mambapy training scan; formers' own scan is always parallel
    intermediate_size: int | None = None  # None: expand * hidden_size (config.json stores the value, as 4.45)

    def __post_init__(self) -> None:
        if self.intermediate_size is None:
            self.intermediate_size = int(self.expand * self.hidden_size)
        self.resolve_time_step_rank()
