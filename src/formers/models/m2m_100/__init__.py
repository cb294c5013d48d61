"""M2M100 and NLLB (model_type m2m_100): BART-style pre-norm layers with a final LayerNorm per stack, a ReLU
feed-forward, token embeddings scaled by sqrt(d_model), and fixed sinusoidal positions counted from the
ids (pads keep the padding position; real tokens count on from it). No embedding norm, no logits bias."""
from .configuration_m2m_100 import M2M100Config
from .modeling_m2m_100 import (
    M2M100ForConditionalGeneration,
    M2M100Model,
    sinusoidal_table,
)

CONFIG_CLASS = M2M100Config
MODEL_CLASSES = {"base": M2M100Model, "seq2seq_lm": M2M100ForConditionalGeneration}
__all__ = ["M2M100Config", "M2M100ForConditionalGeneration", "M2M100Model", "sinusoidal_table"]
