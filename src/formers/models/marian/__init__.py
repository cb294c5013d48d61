"""Marian (Opus-MT): BART-style post-norm layers without an embedding norm, fixed sinusoidal positions
counted from 0 (sin features in the first half, cos in the second; not saved in checkpoints), optional
sqrt(d_model) embedding scale, a `final_logits_bias`, pad as the decoder start token. formers supports the
shared source/target vocabulary (`share_encoder_decoder_embeddings=True`, every Opus-MT checkpoint's)."""
from .configuration_marian import MarianConfig
from .modeling_marian import MarianForCausalLM, MarianModel, MarianMTModel, marian_sinusoidal_table

CONFIG_CLASS = MarianConfig
MODEL_CLASSES = {"base": MarianModel, "seq2seq_lm": MarianMTModel, "causal_lm": MarianForCausalLM}
__all__ = ["MarianForCausalLM", "MarianConfig", "MarianMTModel", "MarianModel", "marian_sinusoidal_table"]
