"""WhisperConfig: field names and defaults of transformers 4.45 (whisper-tiny's shape by default)."""
from __future__ import annotations

from typing import ClassVar

from ...configuration_utils import PretrainedConfig


class WhisperConfig(PretrainedConfig):
    model_type = "whisper"
    attribute_map: ClassVar[dict[str, str]] = {"num_key_value_heads": "encoder_attention_heads",
                     "num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model"}

    vocab_size: int = 51865
    num_mel_bins: int = 80
    encoder_layers: int = 4
    encoder_attention_heads: int = 6
    decoder_layers: int = 4
    decoder_attention_heads: int = 6
    decoder_ffn_dim: int = 1536
    encoder_ffn_dim: int = 1536
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    decoder_start_token_id: int | None = 50257
    use_cache: bool = True
    is_encoder_decoder: bool = True
    activation_function: str = "gelu"
    d_model: int = 384
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    init_std: float = 0.02
    scale_embedding: bool = False
    max_source_positions: int = 1500  # encoder frames after the stride-2 convolution (30 s)
    max_target_positions: int = 448  # the decoder's learned position table
    pad_token_id: int | list[int] | None = 50256
    bos_token_id: int | list[int] | None = 50256
    eos_token_id: int | list[int] | None = 50256
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = None
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    apply_spec_augment: bool = False
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    median_filter_width: int = 7
    num_hidden_layers: int | None = None  # 4.45 stores encoder_layers here

    def __post_init__(self) -> None:
        self.num_hidden_layers = self.encoder_layers
        if self.begin_suppress_tokens is None:  # 4.45's default: a leading space and <|endoftext|>
            self.begin_suppress_tokens = [220, 50256]

    def to_diff_dict(self) -> dict:
        """4.45 counts `suppress_tokens` among its base config's generation defaults (None): unset, it is not written."""
        diff = super().to_diff_dict()
        if diff.get("suppress_tokens", 0) is None:
            del diff["suppress_tokens"]
        return diff

    @property
    def max_position_embeddings(self) -> int:
        """The decoder's position table: generation cannot go past it."""
        return self.max_target_positions

    @property
    def head_dim(self) -> int:
        return self.d_model // self.decoder_attention_heads
