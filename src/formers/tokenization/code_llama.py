"""CodeLlamaTokenizerFast: LlamaTokenizerFast plus prompt infilling.

A text holding `fill_token` ("<FILL_ME>"), or an explicit `suffix=`, is encoded as
`<s>▁<PRE> {prefix}▁<SUF>{suffix}▁<MID>` (or `<s>▁<PRE>▁<SUF>{suffix}▁<MID> {prefix}` with suffix_first=True),
with the pieces and the normalizer 4.45.2's class uses for it. As in 4.45.2, after an infilling call the
backend keeps the legacy normalizer (prepend "▁", spaces to "▁").
"""
from __future__ import annotations

from typing import Any

from tokenizers import normalizers, processors

from ..errors import TokenizerError
from .batch_encoding import BatchEncoding
from .fast import PreTrainedTokenizerFast
from .sentencepiece_convert import SPIECE_UNDERLINE

_INFILL_DEFAULTS = {"prefix_token": "▁<PRE>", "middle_token": "▁<MID>", "suffix_token": "▁<SUF>",
                    "eot_token": "▁<EOT>", "fill_token": "<FILL_ME>"}


class CodeLlamaTokenizerFast(PreTrainedTokenizerFast):
    profile_name = "CodeLlamaTokenizer"
    positional_files = ("vocab_file", "tokenizer_file")

    def __init__(self, *args: Any, **kwargs: Any):
        for name, default in _INFILL_DEFAULTS.items():
            setattr(self, name, kwargs.setdefault(name, default))
        super().__init__(*args, **kwargs)

    def _build_backend(self, tokenizer_object, tokenizer_file, from_slow: bool, kwargs: dict):
        # transformers converts CodeLlama's tokenizer.model with the Llama converter's defaults (legacy, prefix
        # space): the slow CodeLlamaTokenizer it converts from has neither attribute.
        return super()._build_backend(tokenizer_object, tokenizer_file, from_slow,
                                      {**kwargs, "legacy": True, "add_prefix_space": True})

    @property
    def prefix_id(self) -> int | None:
        return None if self.prefix_token is None else self.convert_tokens_to_ids(self.prefix_token)

    @property
    def middle_id(self) -> int | None:
        return None if self.middle_token is None else self.convert_tokens_to_ids(self.middle_token)

    @property
    def suffix_id(self) -> int | None:
        return None if self.suffix_token is None else self.convert_tokens_to_ids(self.suffix_token)

    @property
    def eot_id(self) -> int | None:
        return None if self.eot_token is None else self.convert_tokens_to_ids(self.eot_token)

    def set_infilling_processor(self, reset: bool, suffix_first: bool = False, add_special_tokens: bool = True) -> None:
        """Switch the backend to the infilling layout (reset=False) or back to plain encoding (reset=True)."""
        if reset:
            self._tokenizer.normalizer = normalizers.Sequence([
                normalizers.Prepend(prepend=SPIECE_UNDERLINE), normalizers.Replace(pattern=" ", content=SPIECE_UNDERLINE)])
            self.update_post_processor()
            return
        self._tokenizer.normalizer = normalizers.Replace(pattern=" ", content=SPIECE_UNDERLINE)
        with_bos, with_eos = self.add_bos_token and add_special_tokens, self.add_eos_token and add_special_tokens
        markers = [self.prefix_token, self.suffix_token, "$B", self.middle_token, "$A"] if suffix_first \
            else [self.prefix_token, "$A", self.suffix_token, "$B", self.middle_token]
        pair = ([self.bos_token] if with_bos else []) + markers + ([self.eos_token] if with_eos else [])
        special = [(self.bos_token, self.bos_token_id)] if with_bos else []
        special += [(self.prefix_token, self.prefix_id), (self.suffix_token, self.suffix_id),
                    (self.middle_token, self.middle_id)]
        special += [(self.eos_token, self.eos_token_id)] if with_eos else []
        self._tokenizer.post_processor = processors.TemplateProcessing(single="$A", pair=pair, special_tokens=special)

    def encode_plus(self, text, text_pair=None, suffix_first: bool = False, add_special_tokens: bool = True,
                    **kwargs: Any) -> BatchEncoding:
        """Encode one text; with a suffix (or fill_token in the text) in the infilling layout."""
        text_pair = kwargs.pop("suffix", text_pair)
        if self.fill_token is not None and isinstance(text, str) and self.fill_token in text and text_pair is None:
            text, text_pair = text.split(self.fill_token)
        if not text_pair:
            return super().encode_plus(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)
        if None in (self.prefix_id, self.middle_id, self.suffix_id):
            raise TokenizerError("infilling (a suffix, or fill_token in the text) needs prefix_token, middle_token "
                                 "and suffix_token in the vocabulary")
        self.set_infilling_processor(False, suffix_first=suffix_first, add_special_tokens=add_special_tokens)
        try:
            return super().encode_plus(" " + text, text_pair=text_pair, add_special_tokens=True, **kwargs)
        finally:
            self.set_infilling_processor(True)
