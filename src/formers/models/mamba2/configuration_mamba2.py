"""Mamba2Config: field names and defaults of transformers 4.45 (the defaults describe mamba2-2.8b's
layer shape at Codestral Mamba's width: 64 layers of 128 heads x 64, 8 groups, state 128)."""
from __future__ import annotations

from ...configuration_utils import PretrainedConfig
from ...errors import ConfigError
from ..mamba.configuration_mamba import StateSpaceConfigMixin


class Mamba2Config(StateSpaceConfigMixin, PretrainedConfig):
    model_type = "mamba2"

    num_heads: int = 128
    head_dim: int = 64
    vocab_size: int = 32768
    hidden_size: int = 4096
    state_size: int = 128
    num_hidden_layers: int = 64
    layer_norm_epsilon: float = 1e-5
    pad_token_id: int | list[int] | None = 1
    bos_token_id: int | list[int] | None = 0
    eos_token_id: int | list[int] | None = 2
    expand: int | float = 2
    conv_kernel: int = 4
    n_groups: int = 8
    use_bias: bool = False
    use_conv_bias: bool = True
    hidden_act: str = "silu"
    initializer_range: float = 0.1
    residual_in_fp32: bool = True
    time_step_rank: int | str = "auto"  # "auto": ceil(hidden_size / 16), resolved on construction as 4.45
    time_step_min: float = 0.001
    time_step_max: float = 0.1
    time_step_floor: float = 1e-4
    time_step_limit: tuple | list = (0.0, float("inf"))
    rescale_prenorm_residual: bool = False
    use_cache: bool = True
    rms_norm: bool = True
    chunk_size: int = 256
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        self.resolve_time_step_rank()

    # --- derived sizes the model and the cache read ----------------------------------------------
    @property
    def intermediate_size(self) -> int:
        """Width of the SSM's input x (and of the gate z): expand * hidden_size."""
        return int(self.expand * self.hidden_size)

    @property
    def conv_dim(self) -> int:
        """Channels of the causal convolution: x | B | C."""
        return self.intermediate_size + 2 * self.n_groups * self.state_size

    def check_shapes(self) -> None:
        """Raise ConfigError unless the heads tile the intermediate width and the groups divide the heads."""
        if self.num_heads * self.head_dim != self.intermediate_size:
            raise ConfigError(f"Mamba2Config: num_heads * head_dim ({self.num_heads} * {self.head_dim}) must equal "
                              f"expand * hidden_size ({self.intermediate_size})")
        if self.num_heads % self.n_groups:
            raise ConfigError(f"Mamba2Config: num_heads ({self.num_heads}) must be divisible by n_groups "
                              f"({self.n_groups})")
