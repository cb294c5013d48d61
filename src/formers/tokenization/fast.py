"""`PreTrainedTokenizerFast`: transformers' fast tokenizer API over the `tokenizers` library.

One class serves every family: what LlamaTokenizerFast, GPT2TokenizerFast, ... change (defaults,
BOS/EOS post-processor, prefix space) is data in `profiles.py`, selected by `tokenizer_class`.
Encoding lives in `encoding.py`, files in `serialization.py`, chat templates in `chat_template.py`.
"""
from __future__ import annotations

import copy
import json
import numbers
import os
from typing import Any

from tokenizers import AddedToken, Tokenizer, pre_tokenizers, processors

from ..errors import TokenizerError
from . import chat_template as _chat
from .batch_encoding import to_py_obj
from .encoding import EncodingMixin
from .padding import VERY_LARGE_INTEGER
from .profiles import TokenizerProfile, get_profile
from .bpe_convert import convert_bpe_files
from .sentencepiece_convert import convert_sentencepiece_file
from .special_tokens import SpecialTokensMixin

_SIDES = ("left", "right")


class PreTrainedTokenizerFast(EncodingMixin, SpecialTokensMixin):
    """Fast tokenizer with transformers' public API (encode, decode, pad, chat templates, save/load)."""

    vocab_files_names = {"vocab_file": "tokenizer.model", "tokenizer_file": "tokenizer.json"}
    padding_side: str = "right"
    truncation_side: str = "right"

    # A named subclass (LlamaTokenizerFast, ...) pins its profile; the generic class takes `_tokenizer_class`.
    profile_name: str | None = None
    # Slow-tokenizer classes build the backend from the slow files (tokenizer.model, vocab.json + merges.txt).
    builds_from_slow_files: bool = False
    # Files a named class takes positionally (the generic class keeps positionals as `init_inputs`).
    positional_files: tuple[str, ...] = ()
    # Where a slow class's default differs from its fast twin's (the profile's): LlamaTokenizer pads right.
    default_padding_side: str | None = None

    def __init__(self, *args: Any, tokenizer_object: Tokenizer | None = None, tokenizer_file: str | None = None,
                 _tokenizer_class: str | None = None, _backend: Tokenizer | None = None, **kwargs: Any):
        args, tokenizer_file = self._files_from_positionals(args, tokenizer_file, kwargs)
        profile = get_profile(self.profile_name or _tokenizer_class)
        self._profile: TokenizerProfile = profile
        kwargs = {**profile.defaults, **kwargs}
        kwargs.pop("tokenizer_class", None)
        for key in kwargs:
            if callable(getattr(type(self), key, None)):
                raise TokenizerError(f"tokenizer argument {key!r} conflicts with the method of the same name")
        self._via_from_pretrained = bool(kwargs.pop("_via_from_pretrained", False))
        from_slow = bool(kwargs.pop("from_slow", False)) or (
            self.builds_from_slow_files and kwargs.get("vocab_file") is not None)
        added_tokens_decoder = kwargs.pop("added_tokens_decoder", None) or {}
        self._prepare_profile_kwargs(kwargs)
        if profile.llama_spm and kwargs.get("add_prefix_space") is not None:
            from_slow = True  # transformers rebuilds Llama tokenizers from tokenizer.model in this case
        if _backend is not None and not from_slow:
            self._tokenizer = _backend  # already parsed from tokenizer_file by from_pretrained
        else:
            self._tokenizer = self._build_backend(tokenizer_object, tokenizer_file, from_slow, kwargs)
        self._adopt_backend_settings(kwargs)

        self.init_inputs = tuple(args)
        self.init_kwargs = copy.deepcopy(kwargs)
        self.name_or_path = kwargs.pop("name_or_path", "")
        max_len = kwargs.pop("model_max_length", kwargs.pop("max_len", None))
        self.model_max_length = max_len if max_len is not None else VERY_LARGE_INTEGER
        self.padding_side = kwargs.pop("padding_side", self.default_padding_side or profile.padding_side)
        self.truncation_side = kwargs.pop("truncation_side", "right")
        for name in ("padding_side", "truncation_side"):
            if getattr(self, name) not in _SIDES:
                raise TokenizerError(f"{name}={getattr(self, name)!r} is not valid; expected 'left' or 'right'")
        self.model_input_names = list(kwargs.pop("model_input_names", None) or profile.model_input_names)
        self.clean_up_tokenization_spaces = bool(kwargs.pop("clean_up_tokenization_spaces", False))
        self.split_special_tokens = bool(kwargs.pop("split_special_tokens", False))
        self.chat_template = _chat.normalize_chat_template(kwargs.pop("chat_template", None))
        self.verbose = bool(kwargs.pop("verbose", False))
        self.vocab_file = kwargs.get("vocab_file")
        self.add_prefix_space = kwargs.get("add_prefix_space")
        self.legacy = kwargs.get("legacy")
        self._warned: set[str] = set()
        self._init_special_tokens(kwargs)
        self._tokenizer.encode_special_tokens = self.split_special_tokens
        self._register_added_tokens(added_tokens_decoder)
        self._add_bos_token = bool(kwargs.get("add_bos_token", False))
        self._add_eos_token = bool(kwargs.get("add_eos_token", False))
        if profile.bos_eos_post_processor:
            self.update_post_processor()
        if profile.byte_level_prefix_space:
            self._align_prefix_space(bool(self.add_prefix_space))

    # -- construction steps ------------------------------------------------------------------
    def _files_from_positionals(self, args: tuple, tokenizer_file: str | None, kwargs: dict) -> tuple[tuple, str | None]:
        """Leading positional arguments name the class's files, as in transformers
        (`LlamaTokenizer("tokenizer.model")`, `GPT2Tokenizer("vocab.json", "merges.txt")`)."""
        names = self.positional_files[: len(args)]
        for name, value in zip(names, args):
            if name == "tokenizer_file":
                tokenizer_file = value if tokenizer_file is None else tokenizer_file
            elif value is not None:
                kwargs.setdefault(name, str(value))
        return tuple(args[len(names):]), tokenizer_file

    def _prepare_profile_kwargs(self, kwargs: dict[str, Any]) -> None:
        profile = self._profile
        if profile.llama_spm and kwargs.get("legacy") is None:
            kwargs["legacy"] = True  # transformers' LlamaTokenizerFast default when the config is silent
        if profile.wrap_special_tokens:
            for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
                if isinstance(kwargs.get(name), str):
                    kwargs[name] = AddedToken(kwargs[name], lstrip=False, rstrip=False, special=True,
                                              normalized=False)
        if profile.extra_special_tokens:
            extra = list(kwargs.get("additional_special_tokens") or [])
            extra += [t for t in profile.extra_special_tokens if t not in [str(e) for e in extra]]
            kwargs["additional_special_tokens"] = extra

    def _build_backend(self, tokenizer_object, tokenizer_file, from_slow: bool, kwargs: dict) -> Tokenizer:
        vocab_file = kwargs.get("vocab_file")
        if tokenizer_object is not None:
            if not isinstance(tokenizer_object, Tokenizer):
                raise TokenizerError(f"tokenizer_object must be a tokenizers.Tokenizer, got {type(tokenizer_object)}")
            return Tokenizer.from_str(tokenizer_object.to_str())
        if tokenizer_file is not None and not from_slow:
            try:
                return Tokenizer.from_file(str(tokenizer_file))
            except Exception as exc:  # the Rust loader raises a bare Exception
                raise TokenizerError(f"cannot load tokenizer file {str(tokenizer_file)!r}: {exc}") from exc
        if vocab_file is not None and self._profile.sentencepiece:
            return convert_sentencepiece_file(vocab_file, legacy=kwargs.get("legacy"),
                                              add_prefix_space=kwargs.get("add_prefix_space"),
                                              style=self._profile.sentencepiece_style,
                                              slow_whitespace=self.builds_from_slow_files)
        if vocab_file is not None and kwargs.get("merges_file") is not None and self._profile.saves_bpe_files:
            return convert_bpe_files(vocab_file, kwargs["merges_file"], add_prefix_space=kwargs.get("add_prefix_space"),
                                     style=self._profile.bpe_style)
        if from_slow and vocab_file is None:
            raise TokenizerError(
                f"{self._profile.name}: rebuilding from the SentencePiece model (from_slow or add_prefix_space) "
                "needs tokenizer.model (vocab_file), which was not found"
            )
        raise TokenizerError(
            "cannot build a fast tokenizer: pass tokenizer_object or tokenizer_file (tokenizer.json), or a "
            f"SentencePiece tokenizer.model as vocab_file for a Llama-style class (got class {self._profile.name!r})"
        )

    def _adopt_backend_settings(self, kwargs: dict[str, Any]) -> None:
        """Keep truncation/padding stored in tokenizer.json, as transformers does."""
        truncation = self._tokenizer.truncation
        if truncation is not None:
            kwargs.setdefault("truncation_side", truncation["direction"])
        padding = self._tokenizer.padding
        if padding is not None:
            kwargs.setdefault("pad_token", padding["pad_token"])
            kwargs.setdefault("padding_side", padding["direction"])

    def _register_added_tokens(self, added_tokens_decoder: dict) -> None:
        """Add the config's added tokens and any special token the backend does not know yet."""
        candidates = [tok for _, tok in sorted(added_tokens_decoder.items(), key=lambda item: int(item[0]))]
        known = set(self.get_added_vocab()) | {str(t) for t in candidates}
        candidates += [t for t in self.all_special_tokens_extended
                       if (str(t) not in known if isinstance(t, str) else t not in candidates)]
        special = set(self.all_special_tokens)
        existing = list(self._tokenizer.get_added_tokens_decoder().values())
        to_add = []
        for token in candidates:
            if isinstance(token, str):
                token = AddedToken(token, special=token in special)
            else:
                token.special = token.special or str(token) in special
            if token not in existing:  # re-adding an identical token changes nothing
                to_add.append(token)
        if to_add:
            self._tokenizer.add_tokens(to_add)

    def _align_prefix_space(self, add_prefix_space: bool) -> None:
        pre = self._tokenizer.pre_tokenizer
        if pre is None:
            return
        state = json.loads(pre.__getstate__())
        if state.get("add_prefix_space", add_prefix_space) == add_prefix_space:
            return
        kind = getattr(pre_tokenizers, state.pop("type"))
        state["add_prefix_space"] = add_prefix_space
        self._tokenizer.pre_tokenizer = kind(**state)

    # -- BOS/EOS post-processor (Llama, Gemma, GPT-NeoX, Cohere) -------------------------------------
    def update_post_processor(self) -> None:
        """Rebuild the backend post-processor from add_bos_token / add_eos_token."""
        bos, eos = self.bos_token, self.eos_token
        if self._add_bos_token and bos is None:
            raise TokenizerError("add_bos_token=True but the tokenizer has no bos_token")
        if self._add_eos_token and eos is None:
            raise TokenizerError("add_eos_token=True but the tokenizer has no eos_token")
        head = f"{bos}:0 " if self._add_bos_token else ""
        tail = f" {eos}:0" if self._add_eos_token else ""
        single = f"{head}$A:0{tail}"
        pair = (f"{single}{' ' + bos + ':1' if self._add_bos_token else ''} $B:1"
                f"{' ' + eos + ':1' if self._add_eos_token else ''}")
        special = ([(bos, self.bos_token_id)] if self._add_bos_token else []) + (
            [(eos, self.eos_token_id)] if self._add_eos_token else [])
        self._tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair,
                                                                       special_tokens=special)

    @property
    def add_bos_token(self) -> bool:
        return self._add_bos_token

    @add_bos_token.setter
    def add_bos_token(self, value: bool) -> None:
        self._add_bos_token = bool(value)
        if self._profile.bos_eos_post_processor:
            self.update_post_processor()

    @property
    def add_eos_token(self) -> bool:
        return self._add_eos_token

    @add_eos_token.setter
    def add_eos_token(self, value: bool) -> None:
        self._add_eos_token = bool(value)
        if self._profile.bos_eos_post_processor:
            self.update_post_processor()

    # -- vocabulary ------------------------------------------------------------------------------
    @property
    def is_fast(self) -> bool:
        return True

    @property
    def backend_tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def decoder(self):
        return self._tokenizer.decoder

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary (without added tokens)."""
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    @property
    def added_tokens_decoder(self) -> dict[int, AddedToken]:
        return self._tokenizer.get_added_tokens_decoder()

    @property
    def added_tokens_encoder(self) -> dict[str, int]:
        return {tok.content: idx for idx, tok in sorted(self.added_tokens_decoder.items())}

    def get_added_vocab(self) -> dict[str, int]:
        return self.added_tokens_encoder

    def _add_tokens(self, new_tokens: list, special_tokens: bool = False) -> int:
        if special_tokens:
            return self._tokenizer.add_special_tokens(new_tokens)
        return self._tokenizer.add_tokens(new_tokens)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self._tokenizer.num_special_tokens_to_add(pair)

    @property
    def max_len_single_sentence(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=False)

    @property
    def max_len_sentences_pair(self) -> int:
        return self.model_max_length - self.num_special_tokens_to_add(pair=True)

    def convert_tokens_to_ids(self, tokens: str | list[str] | None) -> int | list[int] | None:
        if tokens is None:
            return None
        if isinstance(tokens, str):
            return self._token_to_id(tokens)
        return [self._token_to_id(t) for t in tokens]

    def _token_to_id(self, token: str) -> int | None:
        index = self._tokenizer.token_to_id(token)
        return self.unk_token_id if index is None else index

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False) -> str | list[str]:
        ids = to_py_obj(ids)
        if isinstance(ids, numbers.Integral):
            return self._tokenizer.id_to_token(int(ids))
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in ids if int(i) not in skip]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return self._tokenizer.decoder.decode(tokens)

    # -- decoding --------------------------------------------------------------------------------
    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: bool | None = None, **kwargs: Any) -> str:
        """Turn ids (list, tensor or array) back into text."""
        ids = to_py_obj(token_ids)
        if isinstance(ids, numbers.Integral):
            ids = [int(ids)]
        if not isinstance(ids, list) or any(not isinstance(i, numbers.Integral) for i in ids):
            raise TokenizerError("decode(token_ids=...) expects an int or a flat sequence of ints; "
                                 "use batch_decode for a batch")
        text = self._decode_ids([int(i) for i in ids], skip_special_tokens, **kwargs)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if clean else text

    def _decode_ids(self, ids: list[int], skip_special_tokens: bool, **kwargs: Any) -> str:
        """Ids -> text before clean-up; slow-tokenizer classes override it with their own joining rules."""
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: bool | None = None, **kwargs: Any) -> list[str]:
        return [self.decode(seq, skip_special_tokens=skip_special_tokens,
                            clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)
                for seq in to_py_obj(sequences)]

    @staticmethod
    def clean_up_tokenization(out_string: str) -> str:
        """Remove spaces before punctuation and English contractions (transformers' rule set)."""
        for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                              (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
            out_string = out_string.replace(before, after)
        return out_string

    # -- chat templates ---------------------------------------------------------------------------
    def get_chat_template(self, chat_template: str | None = None, tools: list | None = None) -> str:
        return _chat.select_template(self.chat_template, chat_template, tools)[1]

    def apply_chat_template(self, conversation, tools=None, documents=None, chat_template=None,
                            add_generation_prompt=False, continue_final_message=False, tokenize=True,
                            padding=False, truncation=False, max_length=None, return_tensors=None,
                            return_dict=False, return_assistant_tokens_mask=False, tokenizer_kwargs=None,
                            **kwargs):
        """Render a conversation with the chat template and optionally tokenize it (see chat_template.py)."""
        return _chat.apply_chat_template(
            self, conversation, tools=tools, documents=documents, chat_template=chat_template,
            add_generation_prompt=add_generation_prompt, continue_final_message=continue_final_message,
            tokenize=tokenize, padding=padding, truncation=truncation, max_length=max_length,
            return_tensors=return_tensors, return_dict=return_dict,
            return_assistant_tokens_mask=return_assistant_tokens_mask, tokenizer_kwargs=tokenizer_kwargs, **kwargs)

    # -- files ------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *init_inputs: Any,
                        **kwargs: Any) -> "PreTrainedTokenizerFast":
        """Load from a folder or hub repo (tokenizer.json or tokenizer.model + tokenizer_config.json)."""
        from .serialization import load_pretrained

        if kwargs.get("gguf_file") is not None:  # the vocabulary is the GGUF file's metadata
            from ..gguf import load_gguf_tokenizer
            return load_gguf_tokenizer(cls, pretrained_model_name_or_path, kwargs.pop("gguf_file"), **kwargs)
        return load_pretrained(cls, pretrained_model_name_or_path, *init_inputs, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, legacy_format: bool | None = None,
                        filename_prefix: str | None = None, push_to_hub: bool = False, **kwargs: Any) -> tuple[str, ...]:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (atomically)."""
        from .serialization import save_pretrained

        if push_to_hub:
            raise TokenizerError("save_pretrained(push_to_hub=True) is not supported by formers; upload the folder")
        return save_pretrained(self, save_directory, legacy_format=legacy_format, filename_prefix=filename_prefix)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name_or_path={self.name_or_path!r}, class={self._profile.name!r}, "
                f"vocab_size={self.vocab_size}, model_max_length={self.model_max_length}, "
                f"padding_side={self.padding_side!r}, truncation_side={self.truncation_side!r}, "
                f"special_tokens={self.special_tokens_map})")


__all__ = ["PreTrainedTokenizerFast"]
