"""Whisper: feature extractor, tokenizer and processor (speech -> text)."""
from .feature_extraction_whisper import WhisperFeatureExtractor

__all__ = ["WhisperFeatureExtractor"]
