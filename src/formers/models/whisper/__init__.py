"""Whisper: feature extractor, tokenizer, processor and the speech-to-text model."""
from .configuration_whisper import WhisperConfig
from .feature_extraction_whisper import WhisperFeatureExtractor
from .modeling_whisper import WhisperForConditionalGeneration, WhisperModel
from .processing_whisper import WhisperProcessor
from .tokenization_whisper import WhisperTokenizer, WhisperTokenizerFast

CONFIG_CLASS = WhisperConfig
MODEL_CLASSES = {"base": WhisperModel, "speech_seq2seq": WhisperForConditionalGeneration}
__all__ = [
           "WhisperConfig",
           "WhisperFeatureExtractor",
           "WhisperForConditionalGeneration",
           "WhisperModel",
           "WhisperProcessor",
           "WhisperTokenizer",
           "WhisperTokenizerFast",
]
