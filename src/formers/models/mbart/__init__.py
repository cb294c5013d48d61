"""mBART: BART with pre-norm layers, a final LayerNorm on each stack, and labels shifted by wrapping each
row's last real token (its language code) round to the front."""
from .configuration_mbart import MBartConfig
from .modeling_mbart import (
    MBartForCausalLM,
    MBartForConditionalGeneration,
    MBartModel,
    shift_tokens_right_wrapped,
)

CONFIG_CLASS = MBartConfig
MODEL_CLASSES = {"base": MBartModel, "seq2seq_lm": MBartForConditionalGeneration, "causal_lm": MBartForCausalLM}
__all__ = ["MBartForCausalLM", "MBartConfig", "MBartForConditionalGeneration", "MBartModel", "shift_tokens_right_wrapped"]
