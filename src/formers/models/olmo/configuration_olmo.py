"""OlmoConfig: field names and defaults of transformers 4.45, and its own `rope_scaling` rules."""
from __future__ import annotations

from typing import Any

from ...configuration_utils import PretrainedConfig
from ...errors import ConfigError
from ..decoder_config import GlobalHeadsMixin


class OlmoConfig(GlobalHeadsMixin, PretrainedConfig):
    model_type = "olmo"

    vocab_size: int = 50304
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None  # None: num_attention_heads
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    use_cache: bool = True
    pad_token_id: int | list[int] | None = 1
    bos_token_id: int | list[int] | None = None
    eos_token_id: int | list[int] | None = 50279
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # {"type": "linear" or "dynamic", "factor": float > 1}
    attention_bias: bool = False
    attention_dropout: float = 0.0
    clip_qkv: float | None = None  # clamp q, k and v projections to [-clip_qkv, clip_qkv]

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        self._validate_rope_scaling()

    def _validate_rope_scaling(self) -> None:
        """OLMo keeps 4.45's older rope rules: exactly `type` and `factor` (no `rope_type`, no other types)."""
        scaling = self.rope_scaling
        if scaling is None:
            return
        if not isinstance(scaling, dict) or len(scaling) != 2:
            raise ConfigError(f"OlmoConfig field 'rope_scaling': expected a dict with two fields, 'type' and "
                              f"'factor', got {scaling!r}")
        if scaling.get("type") not in ("linear", "dynamic"):
            raise ConfigError(f"OlmoConfig field 'rope_scaling': 'type' must be 'linear' or 'dynamic', "
                              f"got {scaling.get('type')!r}")
        factor = scaling.get("factor")
        if not isinstance(factor, float) or factor <= 1.0:
            raise ConfigError(f"OlmoConfig field 'rope_scaling': 'factor' must be a float > 1, got {factor!r}")
