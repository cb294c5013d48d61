"""Tokenizers: transformers' fast-tokenizer API over the `tokenizers` library, plus chat templates."""
from .batch_encoding import BatchEncoding
from .classes import (CodeLlamaTokenizer, CodeLlamaTokenizerFast, GemmaTokenizer, GemmaTokenizerFast, GPT2Tokenizer,
                      GPT2TokenizerFast, LlamaTokenizer, LlamaTokenizerFast, Qwen2Tokenizer, Qwen2TokenizerFast)
from .fast import PreTrainedTokenizerFast
from .json_schema import get_json_schema

__all__ = [
    "BatchEncoding", "PreTrainedTokenizerFast", "get_json_schema", "LlamaTokenizer", "LlamaTokenizerFast",
    "CodeLlamaTokenizer", "CodeLlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast", "GPT2Tokenizer",
    "GPT2TokenizerFast", "Qwen2Tokenizer", "Qwen2TokenizerFast",
]
