"""MBartTokenizerFast: a source is `tokens </s> [src_lang]`, a target `tokens </s> [tgt_lang]` (transformers 4.45);
the 25 fairseq language codes are special tokens. NLLB's legacy format is the same framing, so this reuses
NllbTokenizerFast's language handling (src_lang/tgt_lang, text_target, the translation pipeline's inputs)."""
from __future__ import annotations

from typing import Any

from ...tokenization.profiles import get_profile
from ..m2m_100.tokenization_nllb import NllbTokenizerFast


class MBartTokenizerFast(NllbTokenizerFast):
    profile_name = "MBartTokenizer"

    def __init__(self, *args: Any, src_lang: str | None = None, tgt_lang: str | None = None, **kwargs: Any):
        kwargs.pop("legacy_behaviour", None)
        super().__init__(*args, src_lang=src_lang or "en_XX", tgt_lang=tgt_lang, legacy_behaviour=True, **kwargs)
        self.init_kwargs.pop("legacy_behaviour", None)  # not an MBart setting
        self.lang_code_to_id = {code: self.convert_tokens_to_ids(code)
                                for code in get_profile(self.profile_name).extra_special_tokens}


class MBartTokenizer(MBartTokenizerFast):
    """The slow name, served by the fast implementation over the folder's tokenizer.json: its ids and decoded
    text equal transformers 4.45.2's slow MBartTokenizer (sentencepiece.bpe.model) on the same files (tested)."""

    @property
    def is_fast(self) -> bool:
        return False


__all__ = ["MBartTokenizer", "MBartTokenizerFast"]
