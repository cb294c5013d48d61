"""MarianTokenizer (Opus-MT): SentencePiece pieces looked up in the shared `vocab.json`, `</s>` appended.

Sources are split by `source.spm`, targets (`text_target=`) by `target.spm`; a leading `>>xx<<` language code is
one token; eos/unk/pad written in the text stay single tokens; pieces missing from `vocab.json` become `<unk>`.
Decoding joins pieces with `target.spm`. It needs the `sentencepiece` package (transformers 4.45's class does
too); formers supports the shared vocabulary only (`separate_vocabs=False`, every Opus-MT checkpoint's).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, ClassVar

from ...errors import TokenizerError
from ...loading.hub import resolve_file
from ...tokenization.batch_encoding import BatchEncoding
from ...tokenization.padding import (
    LARGE_INTEGER,
    PaddingStrategy,
    pad_example,
    resolve_strategies,
)

FILES = {"source_spm": "source.spm", "target_spm": "target.spm", "vocab": "vocab.json"}
LANGUAGE_CODE = re.compile(">>.+<<")


def _load_spm(path: str, options: dict, owner: str = "MarianTokenizer"):
    try:
        import sentencepiece
    except ImportError:
        raise TokenizerError(f"{owner} needs the `sentencepiece` package to read {Path(path).name} "
                             "(pip install sentencepiece)") from None
    model = sentencepiece.SentencePieceProcessor(**options)
    model.Load(str(path))
    return model


def clean_up_spaces(text: str) -> str:
    """transformers' `clean_up_tokenization_spaces`: drop the space before punctuation and English clitics."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(before, after)
    return text


class MarianTokenizer:
    vocab_files_names: ClassVar[dict[str, str]] = {**FILES, "target_vocab_file": "target_vocab.json"}
    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]
    padding_side = "right"
    truncation_side = "right"
    is_fast = False

    def __init__(self, source_spm: str, target_spm: str, vocab: str, target_vocab_file: str | None = None,
                 source_lang: str | None = None, target_lang: str | None = None, unk_token: str = "<unk>",
                 eos_token: str = "</s>", pad_token: str = "<pad>", model_max_length: int = 512,
                 sp_model_kwargs: dict | None = None, separate_vocabs: bool = False, **kwargs: Any):
        if separate_vocabs:
            raise TokenizerError("MarianTokenizer: separate_vocabs=True is not supported by formers (one shared "
                                 "vocab.json for source and target)")
        self.sp_model_kwargs = dict(sp_model_kwargs or {})
        self.spm_files = [str(source_spm), str(target_spm)]
        self.spm_source = _load_spm(source_spm, self.sp_model_kwargs)
        self.spm_target = _load_spm(target_spm, self.sp_model_kwargs)
        self.encoder: dict[str, int] = json.loads(Path(vocab).read_text(encoding="utf-8"))
        for name, token in (("unk_token", unk_token), ("pad_token", pad_token), ("eos_token", eos_token)):
            if token not in self.encoder:
                raise TokenizerError(f"MarianTokenizer: {name} {token!r} is not in {vocab}")
        self.decoder = {index: token for token, index in self.encoder.items()}
        self.unk_token, self.eos_token, self.pad_token = unk_token, eos_token, pad_token
        self.source_lang, self.target_lang = source_lang, target_lang
        self.model_max_length = model_max_length
        self.supported_language_codes = [t for t in self.encoder if t.startswith(">>") and t.endswith("<<")]
        self.padding_side = kwargs.pop("padding_side", type(self).padding_side)
        self.init_kwargs = {"source_lang": source_lang, "target_lang": target_lang, "unk_token": unk_token,
                            "eos_token": eos_token, "pad_token": pad_token, "model_max_length": model_max_length,
                            "sp_model_kwargs": self.sp_model_kwargs, "separate_vocabs": False}
        self._current_spm = self.spm_source

    # -- vocabulary ------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def __len__(self) -> int:
        return len(self.encoder)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.encoder)

    @property
    def all_special_tokens(self) -> list[str]:
        return [self.eos_token, self.unk_token, self.pad_token]

    @property
    def all_special_ids(self) -> list[int]:
        return [self.encoder[t] for t in self.all_special_tokens]

    @property
    def eos_token_id(self) -> int:
        return self.encoder[self.eos_token]

    @property
    def pad_token_id(self) -> int:
        return self.encoder[self.pad_token]

    @property
    def unk_token_id(self) -> int:
        return self.encoder[self.unk_token]

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self.encoder.get(tokens, self.unk_token_id)
        return [self.encoder.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int):
            return self.decoder.get(ids, self.unk_token)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.decoder.get(i, self.unk_token) for i in ids if i not in special]

    # -- encoding ----------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """Pieces of `text`: special tokens kept whole, a leading `>>xx<<` code per chunk, spm pieces between."""
        pattern = "(" + "|".join(re.escape(t) for t in sorted(set(self.all_special_tokens), key=len, reverse=True)) + ")"
        pieces: list[str] = []
        for chunk in re.split(pattern, text):
            if not chunk:
                continue
            if chunk in self.all_special_tokens:
                pieces.append(chunk)
                continue
            match = LANGUAGE_CODE.match(chunk)
            pieces += ([match.group(0)] if match else []) + self._current_spm.encode(LANGUAGE_CODE.sub("", chunk),
                                                                                     out_type=str)
        return pieces

    def _ids(self, text: str | list[int], text_pair, add_special_tokens: bool, max_length: int | None,
             truncate: bool) -> list[int]:
        first = self.convert_tokens_to_ids(self.tokenize(text)) if isinstance(text, str) else list(text)
        second = [] if text_pair is None else (self.convert_tokens_to_ids(self.tokenize(text_pair))
                                               if isinstance(text_pair, str) else list(text_pair))
        prefix, suffix = self._framing() if add_special_tokens else ([], [])
        if truncate and max_length is not None:
            budget = max_length - len(prefix) - len(suffix)
            while len(first) + len(second) > budget and (first or second):  # longest_first, one at a time
                if len(first) >= len(second):
                    first.pop()
                else:
                    second.pop()
        return prefix + first + second + suffix

    def _framing(self) -> tuple[list[int], list[int]]:
        """Special ids put before and after each sequence: Marian appends `</s>` only."""
        return [], [self.eos_token_id]

    def _encode_batch(self, texts, pairs, add_special_tokens, padding, truncation, max_length, pad_to_multiple_of,
                      return_attention_mask, return_tensors) -> BatchEncoding:
        pad, trunc, max_length = resolve_strategies(self, padding, truncation, max_length, pad_to_multiple_of)
        single = isinstance(texts, str) or (isinstance(texts, (list, tuple)) and texts and isinstance(texts[0], int))
        batch = [texts] if single else list(texts)
        pair_batch = [pairs] if single else (list(pairs) if pairs is not None else [None] * len(batch))
        rows = [{"input_ids": self._ids(t, p, add_special_tokens, max_length, trunc.value != "do_not_truncate")}
                for t, p in zip(batch, pair_batch)]
        if pad == PaddingStrategy.LONGEST:
            max_length = max(len(r["input_ids"]) for r in rows)
            pad = PaddingStrategy.MAX_LENGTH
        mask = True if return_attention_mask is None else return_attention_mask
        rows = [pad_example(r, main_input="input_ids", pad_token_id=self.pad_token_id, pad_token_type_id=0,
                            padding_side=self.padding_side, strategy=pad, max_length=max_length,
                            pad_to_multiple_of=pad_to_multiple_of, return_attention_mask=mask) for r in rows]
        data = {key: [r[key] for r in rows] for key in rows[0]}
        if single:
            data = {key: value[0] for key, value in data.items()}
        return BatchEncoding(data, tensor_type=return_tensors, prepend_batch_axis=single and return_tensors is not None)

    def __call__(self, text=None, text_pair=None, text_target=None, text_pair_target=None,
                 add_special_tokens: bool = True, padding: bool | str = False, truncation: bool | str | None = None,
                 max_length: int | None = None, pad_to_multiple_of: int | None = None,
                 return_attention_mask: bool | None = None, return_tensors: str | None = None,
                 **kwargs: Any) -> BatchEncoding:
        """Sources (source.spm) and/or targets (target.spm, returned as `labels` beside sources)."""
        if text is None and text_target is None:
            raise TokenizerError("MarianTokenizer: pass `text` and/or `text_target`")
        options = {"add_special_tokens": add_special_tokens, "padding": padding, "truncation": truncation,
                       "max_length": max_length, "pad_to_multiple_of": pad_to_multiple_of,
                       "return_attention_mask": return_attention_mask, "return_tensors": return_tensors}
        sources = None if text is None else self._encode_batch(text, text_pair, **options)
        if text_target is None:
            return sources
        self._current_spm = self.spm_target
        try:
            targets = self._encode_batch(text_target, text_pair_target, **options)
        finally:
            self._current_spm = self.spm_source
        if sources is None:
            return targets
        sources["labels"] = targets["input_ids"]
        return sources

    def encode(self, text, text_pair=None, add_special_tokens: bool = True, **kwargs: Any) -> list[int]:
        return self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    # -- decoding ----------------------------------------------------------------------------------
    def convert_tokens_to_string(self, tokens: list[str], use_source_tokenizer: bool = False) -> str:
        """spm-decoded runs of pieces; each special token written as itself followed by a space."""
        spm = self.spm_source if use_source_tokenizer else self.spm_target
        out, run = "", []
        for token in tokens:
            if token in self.all_special_tokens:
                out += spm.decode_pieces(run) + token + " "
                run = []
            else:
                run.append(token)
        return (out + spm.decode_pieces(run)).replace("\u2581", " ").strip()

    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               use_source_tokenizer: bool = False, **kwargs: Any) -> str:
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else list(token_ids)
        ids = [ids] if isinstance(ids, int) else ids
        text = self.convert_tokens_to_string(self.convert_ids_to_tokens(ids, skip_special_tokens), use_source_tokenizer)
        return clean_up_spaces(text) if clean_up_tokenization_spaces else text

    def batch_decode(self, sequences, **kwargs: Any) -> list[str]:
        return [self.decode(ids, **kwargs) for ids in sequences]

    # -- files ---------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, source in zip(("source.spm", "target.spm"), self.spm_files):
            if Path(source).resolve() != (folder / name).resolve():
                shutil.copyfile(source, folder / name)
            written.append(str(folder / name))
        (folder / "vocab.json").write_text(json.dumps(self.encoder, indent=2, ensure_ascii=False), encoding="utf-8")
        config = {**self.init_kwargs, "tokenizer_class": "MarianTokenizer"}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        special = {"eos_token": self.eos_token, "unk_token": self.unk_token, "pad_token": self.pad_token}
        (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
        return (*written, str(folder / "vocab.json"), str(folder / "tokenizer_config.json"))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        kwargs.pop("_tokenizer_class", None)
        files = {key: resolve_file(pretrained_model_name_or_path, name, **hub) for key, name in FILES.items()}
        config_path = resolve_file(pretrained_model_name_or_path, "tokenizer_config.json", required=False, **hub)
        config = json.loads(Path(config_path).read_text(encoding="utf-8")) if config_path else {}
        for ignored in ("tokenizer_class", "added_tokens_decoder", "name_or_path", "clean_up_tokenization_spaces",
                        "additional_special_tokens", "target_vocab_file"):
            config.pop(ignored, None)
        tokenizer = cls(**files, **{**config, **kwargs})
        if tokenizer.model_max_length > LARGE_INTEGER:
            tokenizer.model_max_length = 512
        return tokenizer


__all__ = ["MarianTokenizer"]
