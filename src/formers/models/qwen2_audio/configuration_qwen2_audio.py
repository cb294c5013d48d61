"""Qwen2-Audio configs: the audio tower's (Whisper-shaped encoder fields) and the composite one holding
`audio_config` + `text_config` (a Qwen2 config), with transformers 4.45's field names and defaults.

The composite config.json nests each sub-config as its differences from the default sub-config plus its
`model_type`, as 4.45 writes it; a sub-config dict is built by the class its `model_type` names.
"""
from __future__ import annotations

from typing import Any

from ...configuration_utils import PretrainedConfig
from ...errors import ConfigError


class Qwen2AudioEncoderConfig(PretrainedConfig):
    model_type = "qwen2_audio_encoder"

    num_mel_bins: int = 128
    encoder_layers: int = 32
    encoder_attention_heads: int = 20
    encoder_ffn_dim: int = 5120
    encoder_layerdrop: float = 0.0
    d_model: int = 1280
    dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_function: str = "gelu"
    activation_dropout: float = 0.0
    scale_embedding: bool = False
    init_std: float = 0.02
    max_source_positions: int = 1500  # encoder frames after the stride-2 convolution (30 s)
    num_hidden_layers: int | None = None  # 4.45 stores encoder_layers here

    def __post_init__(self) -> None:
        self.num_hidden_layers = self.encoder_layers


_SUB_CONFIGS = {"audio_config": "qwen2_audio_encoder", "text_config": "qwen2"}  # field -> default model_type


def _sub_config(field: str, value: Any) -> PretrainedConfig:
    """A sub-config from a dict (built by the class its model_type names), None (defaults) or a config."""
    from ..registry import family

    if isinstance(value, PretrainedConfig):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"Qwen2AudioConfig field {field!r}: expected a dict or a config, got {type(value).__name__}")
    value = dict(value)
    model_type = value.pop("model_type", _SUB_CONFIGS[field])
    return family(model_type).CONFIG_CLASS(**value)


class Qwen2AudioConfig(PretrainedConfig):
    model_type = "qwen2_audio"

    audio_config: Any = None
    text_config: Any = None
    audio_token_index: int = 151646  # the <|AUDIO|> placeholder id

    def __post_init__(self) -> None:
        self.audio_config = _sub_config("audio_config", self.audio_config)
        self.text_config = _sub_config("text_config", self.text_config)

    def get_text_config(self, decoder: bool = False) -> PretrainedConfig:
        """The language model's config (generation defaults such as eos ids are read from it)."""
        return self.text_config

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for field in _SUB_CONFIGS:
            out[field] = getattr(self, field).to_dict()
        return out

    def to_diff_dict(self) -> dict[str, Any]:
        """4.45's layout: each sub-config as what differs from the default composite's sub-config (and from
        its own class defaults), always with its model_type."""
        diff = super().to_diff_dict()
        defaults = type(self)()
        for field in _SUB_CONFIGS:
            ours = getattr(self, field)
            reference = getattr(defaults, field).to_dict()
            own_defaults = type(ours)().to_dict()
            nested = {key: value for key, value in ours.to_dict().items()
                      if reference.get(key, _MISSING) != value or own_defaults.get(key, _MISSING) != value}
            nested["model_type"] = ours.model_type
            diff[field] = nested
        return diff


_MISSING = object()
