"""BartConfig (and the fields BART-style families share): names and defaults of transformers 4.45."""
from __future__ import annotations

from typing import ClassVar

from ...configuration_utils import PretrainedConfig


class BartStyleConfig(PretrainedConfig):
    """The fields BART, mBART, M2M100 and Marian share (each family's config sets its own defaults)."""

    attribute_map: ClassVar[dict[str, str]] = {"num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model"}

    vocab_size: int = 50265
    max_position_embeddings: int = 1024
    d_model: int = 1024
    encoder_ffn_dim: int = 4096
    encoder_layers: int = 12
    encoder_attention_heads: int = 16
    decoder_ffn_dim: int = 4096
    decoder_layers: int = 12
    decoder_attention_heads: int = 16
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation_function: str = "gelu"
    init_std: float = 0.02
    encoder_layerdrop: float = 0.0
    decoder_layerdrop: float = 0.0
    use_cache: bool = True
    num_hidden_layers: int | None = None  # 4.45 stores encoder_layers here
    scale_embedding: bool = False  # token embeddings * sqrt(d_model)
    is_encoder_decoder: bool = True
    bos_token_id: int | list[int] | None = 0
    pad_token_id: int | list[int] | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 2

    def __post_init__(self) -> None:
        self.num_hidden_layers = self.encoder_layers


class BartConfig(BartStyleConfig):
    model_type = "bart"
    classifier_dropout: float = 0.0
    forced_eos_token_id: int | None = 2
    id2label: dict | None = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}  # 4.45's BART has three labels
    label2id: dict | None = {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
