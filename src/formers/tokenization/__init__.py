"""Tokenizers: transformers' fast-tokenizer API over the `tokenizers` library, plus chat templates."""
from .batch_encoding import BatchEncoding
from .fast import PreTrainedTokenizerFast
from .json_schema import get_json_schema

__all__ = ["BatchEncoding", "PreTrainedTokenizerFast", "get_json_schema"]
