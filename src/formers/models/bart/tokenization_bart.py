"""BartTokenizerFast: byte-level BPE with RoBERTa's `<s> ... </s>` framing and BART's special tokens."""
from __future__ import annotations

from ...tokenization.fast import PreTrainedTokenizerFast


class BartTokenizerFast(PreTrainedTokenizerFast):
    profile_name = "BartTokenizer"
    positional_files = ("vocab_file", "merges_file", "tokenizer_file")


class BartTokenizer(BartTokenizerFast):
    """The slow name, served by the fast implementation over the folder's tokenizer.json: its ids and decoded
    text equal transformers 4.45.2's slow BartTokenizer (vocab.json + merges.txt) on the same files (tested)."""

    @property
    def is_fast(self) -> bool:
        return False


__all__ = ["BartTokenizer", "BartTokenizerFast"]
