"""Whisper: feature extractor, tokenizer and processor (speech -> text)."""
from .feature_extraction_whisper import WhisperFeatureExtractor
from .processing_whisper import WhisperProcessor
from .tokenization_whisper import WhisperTokenizer, WhisperTokenizerFast

__all__ = ["WhisperFeatureExtractor", "WhisperProcessor", "WhisperTokenizer", "WhisperTokenizerFast"]
