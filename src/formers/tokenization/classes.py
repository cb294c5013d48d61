"""transformers' tokenizer class names (LlamaTokenizer, GPT2TokenizerFast, ...) as thin subclasses of
`PreTrainedTokenizerFast`.

Each class pins its profile (defaults and hooks, see profiles.py), so `LlamaTokenizerFast.from_pretrained`
behaves as LlamaTokenizerFast whatever tokenizer_config.json names. The "slow" names build their backend from
the slow files (tokenizer.model, or vocab.json + merges.txt) and apply the slow class's encode/decode rules
(slow_sentencepiece.py), so their ids and text equal transformers' slow class of that name; they still run on
the `tokenizers` library.
"""
from __future__ import annotations

from .code_llama import CodeLlamaTokenizerFast
from .fast import PreTrainedTokenizerFast
from .slow_sentencepiece import SlowCodeLlamaMixin, SlowGemmaMixin, SlowLlamaMixin


class LlamaTokenizerFast(PreTrainedTokenizerFast):
    profile_name = "LlamaTokenizer"
    positional_files = ("vocab_file", "tokenizer_file")

    def _build_backend(self, tokenizer_object, tokenizer_file, from_slow: bool, kwargs: dict):
        # 4.45.2 quirk: built directly from tokenizer.model (not from_pretrained), an unset add_prefix_space
        # reaches the converter as None and means no prefix space.
        if not self._via_from_pretrained and kwargs.get("add_prefix_space") is None:
            kwargs = {**kwargs, "add_prefix_space": False}
        return super()._build_backend(tokenizer_object, tokenizer_file, from_slow, kwargs)


class LlamaTokenizer(SlowLlamaMixin, PreTrainedTokenizerFast):
    profile_name = "LlamaTokenizer"
    positional_files = ("vocab_file",)


class CodeLlamaTokenizer(SlowCodeLlamaMixin, PreTrainedTokenizerFast):
    profile_name = "CodeLlamaTokenizer"
    positional_files = ("vocab_file",)


class GemmaTokenizerFast(PreTrainedTokenizerFast):
    profile_name = "GemmaTokenizer"
    positional_files = ("vocab_file", "tokenizer_file")


class GemmaTokenizer(SlowGemmaMixin, PreTrainedTokenizerFast):
    profile_name = "GemmaTokenizer"
    positional_files = ("vocab_file",)


class GPT2TokenizerFast(PreTrainedTokenizerFast):
    profile_name = "GPT2Tokenizer"
    positional_files = ("vocab_file", "merges_file", "tokenizer_file")


class GPT2Tokenizer(PreTrainedTokenizerFast):
    profile_name = "GPT2Tokenizer"
    positional_files = ("vocab_file", "merges_file")
    builds_from_slow_files = True

    @property
    def is_fast(self) -> bool:
        return False


class Qwen2TokenizerFast(PreTrainedTokenizerFast):
    profile_name = "Qwen2Tokenizer"
    positional_files = ("vocab_file", "merges_file", "tokenizer_file")


class Qwen2Tokenizer(PreTrainedTokenizerFast):
    profile_name = "Qwen2Tokenizer"
    positional_files = ("vocab_file", "merges_file")
    builds_from_slow_files = True

    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = False,
               **kwargs) -> str:
        # The slow Qwen2Tokenizer does not clean up spaces unless asked, whatever tokenizer_config.json says.
        return super().decode(token_ids, skip_special_tokens, clean_up_tokenization_spaces, **kwargs)

    @property
    def is_fast(self) -> bool:
        return False


TOKENIZER_CLASSES: dict[str, type[PreTrainedTokenizerFast]] = {
    cls.__name__: cls for cls in (
        PreTrainedTokenizerFast, LlamaTokenizer, LlamaTokenizerFast, CodeLlamaTokenizer, CodeLlamaTokenizerFast,
        GemmaTokenizer, GemmaTokenizerFast, GPT2Tokenizer, GPT2TokenizerFast, Qwen2Tokenizer, Qwen2TokenizerFast)
}


# Classes that live with their family (imported on first use, so tokenization never imports models/).
LAZY_TOKENIZER_CLASSES: dict[str, str] = {
    "WhisperTokenizer": "formers.models.whisper.tokenization_whisper",
    "WhisperTokenizerFast": "formers.models.whisper.tokenization_whisper",
    "NllbTokenizer": "formers.models.m2m_100.tokenization_nllb",
    "NllbTokenizerFast": "formers.models.m2m_100.tokenization_nllb",
    "T5TokenizerFast": "formers.models.t5.tokenization_t5",
    "BartTokenizerFast": "formers.models.bart.tokenization_bart",
    "MBartTokenizerFast": "formers.models.mbart.tokenization_mbart",
    "MarianTokenizer": "formers.models.marian.tokenization_marian",
    "T5Tokenizer": "formers.models.t5.tokenization_t5", "MT5Tokenizer": "formers.models.t5.tokenization_t5",
    "MT5TokenizerFast": "formers.models.t5.tokenization_t5", "BartTokenizer": "formers.models.bart.tokenization_bart",
    "MBartTokenizer": "formers.models.mbart.tokenization_mbart",
    "MBart50TokenizerFast": "formers.models.mbart50.tokenization_mbart50_fast",
    "MBart50Tokenizer": "formers.models.mbart50.tokenization_mbart50_fast",
    "M2M100Tokenizer": "formers.models.m2m_100.tokenization_m2m_100",
}


def _known(name: str) -> type[PreTrainedTokenizerFast] | None:
    if name not in TOKENIZER_CLASSES and name in LAZY_TOKENIZER_CLASSES:
        import importlib
        TOKENIZER_CLASSES[name] = getattr(importlib.import_module(LAZY_TOKENIZER_CLASSES[name]), name)
    return TOKENIZER_CLASSES.get(name)


def tokenizer_class_for(name: str | None, use_fast: bool = True) -> type[PreTrainedTokenizerFast] | None:
    """The formers class AutoTokenizer uses for a `tokenizer_class` name (None when formers has no such class).

    As in transformers, use_fast=True turns a slow name into its "Fast" twin; otherwise the name is taken as
    it is (a "Fast" name stays fast).
    """
    if not name:
        return None
    if use_fast and not name.endswith("Fast") and _known(f"{name}Fast") is not None:
        return TOKENIZER_CLASSES[f"{name}Fast"]
    return _known(name)
