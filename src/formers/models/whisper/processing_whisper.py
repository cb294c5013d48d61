"""WhisperProcessor: one object holding the feature extractor (audio in) and the tokenizer (text in/out)."""
from __future__ import annotations

import os
from typing import Any

from ...errors import ConfigError
from ...feature_extraction_utils import BatchFeature
from .feature_extraction_whisper import WhisperFeatureExtractor
from .tokenization_whisper import WhisperTokenizerFast


class WhisperProcessor:
    feature_extractor_class = "WhisperFeatureExtractor"
    tokenizer_class = ("WhisperTokenizer", "WhisperTokenizerFast")

    def __init__(self, feature_extractor: WhisperFeatureExtractor, tokenizer: WhisperTokenizerFast):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.current_processor = feature_extractor

    def __call__(self, audio: Any = None, *, text: Any = None, sampling_rate: int | None = None,
                 **kwargs: Any) -> Any:
        """Features of `audio`; token ids of `text`; both: features with the ids as `labels`."""
        if audio is None and text is None:
            raise ConfigError("WhisperProcessor: pass `audio` (features) and/or `text` (labels)")
        features = None if audio is None else self.feature_extractor(audio, sampling_rate=sampling_rate, **kwargs)
        encodings = None if text is None else self.tokenizer(text, **kwargs)
        if features is None:
            return encodings
        if encodings is not None:
            features["labels"] = encodings["input_ids"]
        return features

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer.decode(*args, **kwargs)

    def get_decoder_prompt_ids(self, task: str | None = None, language: str | None = None,
                               no_timestamps: bool = True) -> list[tuple[int, int]]:
        return self.tokenizer.get_decoder_prompt_ids(task=task, language=language, no_timestamps=no_timestamps)

    def get_prompt_ids(self, text: str, return_tensors: str | None = "np"):
        return self.tokenizer.get_prompt_ids(text, return_tensors=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return list(dict.fromkeys(self.tokenizer.model_input_names + self.feature_extractor.model_input_names))

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> list[str]:
        self.feature_extractor.processor_class = type(self).__name__  # lets AutoProcessor find this class
        return [*self.feature_extractor.save_pretrained(save_directory),
                *self.tokenizer.save_pretrained(save_directory)]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> WhisperProcessor:
        from ..auto.tokenization_auto import AutoTokenizer

        return cls(WhisperFeatureExtractor.from_pretrained(pretrained_model_name_or_path, **kwargs),
                   AutoTokenizer.from_pretrained(pretrained_model_name_or_path, **kwargs))


__all__ = ["BatchFeature", "WhisperProcessor"]
