"""MBart50TokenizerFast: mBART-50's framing puts the language code first, `[src_lang] tokens </s>` (targets:
`[tgt_lang] tokens </s>`), as transformers 4.45 does; the 52 fairseq codes are special tokens. That is NLLB's
non-legacy framing, so this reuses NllbTokenizerFast's language handling (src_lang/tgt_lang, text_target, the
translation pipeline's `forced_bos_token_id`)."""
from __future__ import annotations

from typing import Any

from ...tokenization.profiles import get_profile
from ..m2m_100.tokenization_nllb import NllbTokenizerFast
from ..t5.tokenization_t5 import SlowSentencePieceDecoding


class MBart50TokenizerFast(NllbTokenizerFast):
    profile_name = "MBart50Tokenizer"

    def __init__(self, *args: Any, src_lang: str | None = None, tgt_lang: str | None = None, **kwargs: Any):
        kwargs.pop("legacy_behaviour", None)
        super().__init__(*args, src_lang=src_lang or "en_XX", tgt_lang=tgt_lang, legacy_behaviour=False, **kwargs)
        self.init_kwargs.pop("legacy_behaviour", None)  # not an mBART-50 setting
        self.lang_code_to_id = {code: self.convert_tokens_to_ids(code)
                                for code in get_profile(self.profile_name).extra_special_tokens}


class MBart50Tokenizer(SlowSentencePieceDecoding, MBart50TokenizerFast):
    """The slow name, served by the fast implementation over the folder's tokenizer.json: its ids and decoded
    text equal transformers 4.45.2's slow MBart50Tokenizer (sentencepiece.bpe.model) on the same files (tested)."""

    @property
    def is_fast(self) -> bool:
        return False


__all__ = ["MBart50Tokenizer", "MBart50TokenizerFast"]
