"""NllbTokenizerFast: NLLB's language codes as special tokens around each sequence (transformers 4.45).

Non-legacy format (the default, `legacy_behaviour=False`): a source is `[src_lang] tokens </s>` and a
target `[tgt_lang] tokens </s>`; the legacy format puts the code last (`tokens </s> [lang]`). Setting
`src_lang` rebuilds the backend's post-processor. The translation pipeline calls
`_build_translation_inputs`, which also returns the target code as `forced_bos_token_id` for generate().
"""
from __future__ import annotations

from typing import Any

from tokenizers import processors

from ...errors import TokenizerError
from ...tokenization.fast import PreTrainedTokenizerFast
from ...tokenization.language_pair import LanguagePairEncoding


class NllbTokenizerFast(LanguagePairEncoding, PreTrainedTokenizerFast):
    profile_name = "NllbTokenizer"
    positional_files = ("vocab_file", "tokenizer_file")

    def __init__(self, *args: Any, src_lang: str | None = None, tgt_lang: str | None = None,
                 legacy_behaviour: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.legacy_behaviour = legacy_behaviour
        self._src_lang = src_lang or "eng_Latn"
        self.tgt_lang = tgt_lang
        self.init_kwargs.update(src_lang=self._src_lang, tgt_lang=tgt_lang, legacy_behaviour=legacy_behaviour)
        self.set_src_lang_special_tokens(self._src_lang)

    @property
    def src_lang(self) -> str:
        return self._src_lang

    @src_lang.setter
    def src_lang(self, new_src_lang: str) -> None:
        self._src_lang = new_src_lang
        self.set_src_lang_special_tokens(new_src_lang)

    def _language_template(self, lang: str) -> None:
        code = self.convert_tokens_to_ids(lang)
        if lang not in self.get_vocab():
            raise TokenizerError(f"language code {lang!r} is not a token of this tokenizer (expected a code such as "
                                 "'eng_Latn' or 'fra_Latn')")
        eos = self.eos_token
        head, tail = ([], [eos, lang]) if self.legacy_behaviour else ([lang], [eos])
        single = " ".join([*(f"{t}:0" for t in head), "$A:0", *(f"{t}:0" for t in tail)])
        pair = " ".join([*(f"{t}:0" for t in head), "$A:0", "$B:0", *(f"{t}:0" for t in tail)])
        self._tokenizer.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=[(lang, code), (eos, self.eos_token_id)])

    def set_src_lang_special_tokens(self, src_lang: str) -> None:
        """Sources: `[src_lang] tokens </s>` (legacy: `tokens </s> [src_lang]`)."""
        self._language_template(src_lang)

    def set_tgt_lang_special_tokens(self, lang: str) -> None:
        """Targets: `[tgt_lang] tokens </s>` (legacy: `tokens </s> [tgt_lang]`)."""
        self._language_template(lang)


class NllbTokenizer(NllbTokenizerFast):
    """The slow name: formers serves it with the fast implementation (same ids for a tokenizer.json)."""
