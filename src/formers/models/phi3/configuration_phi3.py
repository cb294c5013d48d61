"""Phi3Config: field names and defaults of transformers 4.45, and Phi3's own `rope_scaling` rules."""
from __future__ import annotations

from typing import Any

from ...errors import ConfigError
from ..decoder_config import DecoderConfig, GlobalHeadsMixin

LONGROPE_ALIASES = ("su", "yarn")  # names older Phi-3 checkpoints give the same scaling


class Phi3Config(GlobalHeadsMixin, DecoderConfig):
    model_type = "phi3"

    vocab_size = 32064
    hidden_size = 3072
    intermediate_size = 8192
    resid_pdrop: float = 0.0  # training only, as the embedding dropout
    embd_pdrop: float = 0.0
    max_position_embeddings = 4096
    original_max_position_embeddings: int = 4096  # the trained length: longrope's long factors apply past it
    rms_norm_eps = 1e-5
    rope_scaling: dict[str, Any] | None = None  # {"type": "longrope", "short_factor": [...], "long_factor": [...]}
    bos_token_id: int | list[int] | None = 1
    eos_token_id: int | list[int] | None = 32000
    pad_token_id: int | list[int] | None = 32000
    sliding_window: int | None = None  # read by 4.45's flash-attention path only (see layer_sliding_window)

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        self.check_heads_divide_hidden()
        scaling = self.rope_scaling
        if isinstance(scaling, dict) and scaling.get("type") in LONGROPE_ALIASES:
            scaling["type"] = "longrope"
        self._validate_rope_scaling()

    def _validate_rope_scaling(self) -> None:
        """4.45's Phi3 rules: exactly `type` ("longrope"), `short_factor` and `long_factor`, each a list of
        head_dim / 2 numbers (no `rope_type` key: 4.45.2 refuses a fourth field when it loads a saved config)."""
        scaling = self.rope_scaling
        if scaling is None:
            return
        if not isinstance(scaling, dict) or len(scaling) != 3:
            raise ConfigError(f"Phi3Config field 'rope_scaling': expected a dict with three fields, 'type', "
                              f"'short_factor' and 'long_factor', got {scaling!r}")
        if scaling.get("type") != "longrope":
            raise ConfigError(f"Phi3Config field 'rope_scaling': 'type' must be 'longrope' (or its older names "
                              f"{list(LONGROPE_ALIASES)}), got {scaling.get('type')!r}")
        half = self.head_dim // 2
        for key in ("short_factor", "long_factor"):
            factors = scaling.get(key)
            if not isinstance(factors, list) or not all(isinstance(x, (int, float)) for x in factors):
                raise ConfigError(f"Phi3Config field 'rope_scaling.{key}': expected a list of numbers, got {factors!r}")
            if len(factors) != half:
                raise ConfigError(f"Phi3Config field 'rope_scaling.{key}': expected {half} numbers (head_dim / 2), "
                                  f"got {len(factors)}")
