"""Qwen2-Audio: audio encoder + projector + Qwen2 decoder, and its processor."""
from .configuration_qwen2_audio import Qwen2AudioConfig, Qwen2AudioEncoderConfig
from .modeling_qwen2_audio import (
    Qwen2AudioEncoder,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioPreTrainedModel,
)
from .processing_qwen2_audio import Qwen2AudioProcessor

CONFIG_CLASS = Qwen2AudioConfig
MODEL_CLASSES = {"seq2seq_lm": Qwen2AudioForConditionalGeneration}  # 4.45 maps it under AutoModelForSeq2SeqLM
__all__ = ["Qwen2AudioConfig", "Qwen2AudioEncoder", "Qwen2AudioEncoderConfig", "Qwen2AudioForConditionalGeneration",
           "Qwen2AudioPreTrainedModel", "Qwen2AudioProcessor"]
