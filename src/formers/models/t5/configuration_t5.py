"""T5Config: field names and defaults of transformers 4.45 (also Flan-T5's; mT5's subclass is in models/mt5)."""
from __future__ import annotations

from typing import ClassVar

from ...configuration_utils import PretrainedConfig
from ...errors import ConfigError


class T5Config(PretrainedConfig):
    model_type = "t5"
    attribute_map: ClassVar[dict[str, str]] = {"hidden_size": "d_model", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
                     "head_dim": "d_kv"}

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 2048
    num_layers: int = 6
    num_decoder_layers: int | None = None  # None: as many as the encoder
    num_heads: int = 8
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    classifier_dropout: float = 0.0
    layer_norm_epsilon: float = 1e-6
    initializer_factor: float = 1.0
    feed_forward_proj: str = "relu"  # "relu", "gelu", "gated-gelu", "gated-silu", ...
    use_cache: bool = True
    is_encoder_decoder: bool = True
    pad_token_id: int | list[int] | None = 0
    eos_token_id: int | list[int] | None = 1

    def __post_init__(self) -> None:
        if self.num_decoder_layers is None:
            self.num_decoder_layers = self.num_layers
        parts = self.feed_forward_proj.split("-")
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
            raise ConfigError(f"{type(self).__name__} field 'feed_forward_proj': expected 'ACT' or 'gated-ACT' "
                              f"(e.g. 'relu', 'gated-gelu'), got {self.feed_forward_proj!r}")
        # derived, and written to config.json as 4.45 writes them; gated-gelu means the tanh GELU
        self.dense_act_fn = "gelu_new" if self.feed_forward_proj == "gated-gelu" else parts[-1]
        self.is_gated_act = parts[0] == "gated"

    @property
    def max_position_embeddings(self) -> None:
        """T5 has relative positions only: no maximum length for generate() to warn about."""
        return None
