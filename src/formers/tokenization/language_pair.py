"""What translation tokenizers with language codes (NLLB, mBART, M2M100) share: targets framed with the
target language, and the translation pipeline's inputs with the target code as `forced_bos_token_id`."""
from __future__ import annotations

from typing import Any

from ..errors import TokenizerError


class LanguagePairEncoding:
    """Mixin over a tokenizer with `src_lang`/`tgt_lang` and `set_{src,tgt}_lang_special_tokens`."""

    def target_language_id(self, lang: str) -> int:
        """The id generate() must force first to write `lang`."""
        return self.convert_tokens_to_ids(lang)

    def __call__(self, text=None, text_pair=None, text_target=None, text_pair_target=None, **kwargs: Any):
        """Sources framed with `src_lang`; targets (`text_target=`, returned as `labels`) with `tgt_lang`."""
        name = type(self).__name__
        if text is None and text_target is None:
            raise TokenizerError(f"{name}: pass `text` and/or `text_target`")
        sources = None if text is None else super().__call__(text, text_pair, **kwargs)
        if text_target is None:
            return sources
        if self.tgt_lang is None:
            raise TokenizerError(f"{name}: `text_target` needs `tgt_lang` (set tokenizer.tgt_lang first)")
        self.set_tgt_lang_special_tokens(self.tgt_lang)
        try:
            targets = super().__call__(text_target, text_pair_target, **kwargs)
        finally:
            self.set_src_lang_special_tokens(self._src_lang)
        if sources is None:
            return targets
        sources["labels"] = targets["input_ids"]
        return sources

    def _build_translation_inputs(self, raw_inputs, return_tensors: str, src_lang: str | None,
                                  tgt_lang: str | None, **extra_kwargs: Any):
        """The translation pipeline's inputs: the source framed for `src_lang`, `tgt_lang`'s id as forced BOS."""
        if src_lang is None or tgt_lang is None:
            raise TokenizerError("Translation requires a `src_lang` and a `tgt_lang` for this model")
        self.src_lang = src_lang
        inputs = self(raw_inputs, add_special_tokens=True, return_tensors=return_tensors, **extra_kwargs)
        inputs["forced_bos_token_id"] = self.target_language_id(tgt_lang)
        return inputs
