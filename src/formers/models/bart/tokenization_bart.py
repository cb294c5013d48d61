"""BartTokenizerFast: byte-level BPE with RoBERTa's `<s> ... </s>` framing and BART's special tokens."""
from __future__ import annotations

from ...tokenization.fast import PreTrainedTokenizerFast


class BartTokenizerFast(PreTrainedTokenizerFast):
    profile_name = "BartTokenizer"
    positional_files = ("vocab_file", "merges_file", "tokenizer_file")


__all__ = ["BartTokenizerFast"]
