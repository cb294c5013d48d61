"""mT5: T5's architecture under mT5's config."""
from ..t5.modeling_t5 import T5EncoderModel, T5ForConditionalGeneration, T5Model
from .configuration_mt5 import MT5Config


class MT5Model(T5Model):
    config_class = MT5Config


class MT5ForConditionalGeneration(T5ForConditionalGeneration):
    config_class = MT5Config
    base_model_class = MT5Model


class MT5EncoderModel(T5EncoderModel):
    config_class = MT5Config
