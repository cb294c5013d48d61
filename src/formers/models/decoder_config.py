"""Fields every decoder-only family here shares; a family config restates only its defaults and extras."""
from __future__ import annotations

from typing import Any

from ..configuration_utils import PretrainedConfig
from ..errors import ConfigError
from ..modeling.rope import validate_rope_scaling


class DecoderConfig(PretrainedConfig):
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    tie_word_embeddings: bool = False
    rope_theta: float = 10000.0
    attention_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        rope_scaling: dict[str, Any] | None = vars(self).get("rope_scaling")
        if rope_scaling is not None and "type" in rope_scaling:  # older checkpoints say "type"
            rope_scaling["rope_type"] = rope_scaling["type"]
        if "rope_scaling" in self._fields:
            validate_rope_scaling(self)

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        """The attention window of layer `layer_idx` (None: global). The one truth that the model's
        masks and every cache (SlidingWindowCache, HybridCache, generate()'s choice) read."""
        return vars(self).get("sliding_window")


class GlobalHeadsMixin:
    """For configs whose heads split `hidden_size` evenly and whose layers all attend globally (Phi, Cohere,
    StableLM, GPT-NeoX, OLMo; Starcoder2 and Phi3 too, whose `sliding_window` 4.45.2 applies only in its
    flash-attention path: its eager and SDPA paths, the ones formers matches, attend globally)."""

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def layer_sliding_window(self, layer_idx: int) -> int | None:
        return None

    def check_heads_divide_hidden(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"{type(self).__name__}: hidden_size ({self.hidden_size}) must be divisible by "
                              f"num_attention_heads ({self.num_attention_heads})")
