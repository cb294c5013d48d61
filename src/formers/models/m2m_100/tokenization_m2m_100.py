"""M2M100Tokenizer: SentencePiece pieces (`sentencepiece.bpe.model`) looked up in `vocab.json`, framed as
`[__src__] tokens </s>` (targets: `[__tgt__] tokens </s>`), as transformers 4.45's slow class does.

The language tokens (`__en__`, `__fr__`, ...) are not in vocab.json: they take the ids right after it, in the
order of the checkpoint's language list ("m2m100": 100 codes, "wmt21": 8). `get_lang_id("fr")` gives the id
generate() needs as `forced_bos_token_id`. Needs the `sentencepiece` package (4.45's class does too).
The padding, truncation and batching machinery is MarianTokenizer's (same vocab.json + spm design).
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
from ...tokenization.language_pair import LanguagePairEncoding
from ..marian.tokenization_marian import MarianTokenizer, _load_spm, clean_up_spaces

LANGUAGE_CODES: dict[str, tuple[str, ...]] = {
    "m2m100": tuple(
        "af am ar ast az ba be bg bn br bs ca ceb cs cy da de el en es et fa ff fi fr fy ga gd gl gu ha he hi hr ht hu "
        "hy id ig ilo is it ja jv ka kk km kn ko lb lg ln lo lt lv mg mk ml mn mr ms my ne nl no ns oc or pa pl ps pt "
        "ro ru sd si sk sl so sq sr ss su sv sw ta th tl tn tr uk ur uz vi wo xh yi yo zh zu".split()),
    "wmt21": ("en", "ha", "is", "ja", "cs", "ru", "zh", "de"),
}
FILES = {"vocab_file": "vocab.json", "spm_file": "sentencepiece.bpe.model"}


class M2M100Tokenizer(LanguagePairEncoding, MarianTokenizer):
    vocab_files_names: ClassVar[dict[str, str]] = dict(FILES)

    def __init__(self, vocab_file: str, spm_file: str, src_lang: str | None = None, tgt_lang: str | None = None,
                 bos_token: str = "<s>", eos_token: str = "</s>", sep_token: str = "</s>", pad_token: str = "<pad>",
                 unk_token: str = "<unk>", language_codes: str = "m2m100", sp_model_kwargs: dict | None = None,
                 num_madeup_words: int = 8, model_max_length: int = int(1e30),
                 clean_up_tokenization_spaces: bool = False, additional_special_tokens: list | None = None,
                 **kwargs: Any):
        if language_codes not in LANGUAGE_CODES:
            raise TokenizerError(f"M2M100Tokenizer: language_codes={language_codes!r}; expected one of "
                                 f"{sorted(LANGUAGE_CODES)}")
        self.sp_model_kwargs = dict(sp_model_kwargs or {})
        self.spm_file, self.vocab_file = str(spm_file), str(vocab_file)
        self.sp_model = _load_spm(spm_file, self.sp_model_kwargs, owner="M2M100Tokenizer")
        self.spm_source = self.spm_target = self._current_spm = self.sp_model
        self.encoder: dict[str, int] = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        for name, token in (("unk_token", unk_token), ("pad_token", pad_token), ("eos_token", eos_token),
                            ("bos_token", bos_token)):
            if token not in self.encoder:
                raise TokenizerError(f"M2M100Tokenizer: {name} {token!r} is not in {vocab_file}")
        self.decoder = {index: token for token, index in self.encoder.items()}
        self.language_codes = language_codes
        codes = LANGUAGE_CODES[language_codes]
        self.lang_code_to_token = {code: self.get_lang_token(code) for code in codes}
        self.lang_code_to_id = {code: len(self.encoder) + i for i, code in enumerate(codes)}
        self.lang_token_to_id = {self.get_lang_token(code): i for code, i in self.lang_code_to_id.items()}
        self.id_to_lang_token = {i: token for token, i in self.lang_token_to_id.items()}
        self.bos_token, self.eos_token, self.sep_token = bos_token, eos_token, sep_token
        self.unk_token, self.pad_token = unk_token, pad_token
        self.model_max_length = model_max_length
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.num_madeup_words = num_madeup_words
        self.padding_side = kwargs.pop("padding_side", type(self).padding_side)
        # 4.45 treats language tokens as special only when the config lists them (hub checkpoints do); then
        # they are split out of written text, skipped by skip_special_tokens and counted in len().
        extra = [t["content"] if isinstance(t, dict) else str(t) for t in additional_special_tokens or []]
        unknown = [t for t in extra if t not in self.lang_token_to_id and t not in self.encoder]
        if unknown:
            raise TokenizerError(f"M2M100Tokenizer: additional_special_tokens {unknown} are neither language tokens "
                                 f"of {language_codes!r} nor in {vocab_file}")
        self._additional = list(dict.fromkeys(extra))
        self._special_languages = {t for t in self._additional if t in self.lang_token_to_id}
        self.tgt_lang = tgt_lang
        self.src_lang = src_lang or "en"
        self.init_kwargs = {"src_lang": src_lang, "tgt_lang": tgt_lang, "bos_token": bos_token,
                            "eos_token": eos_token, "sep_token": sep_token, "pad_token": pad_token,
                            "unk_token": unk_token, "language_codes": language_codes,
                            "sp_model_kwargs": self.sp_model_kwargs, "num_madeup_words": num_madeup_words,
                            "model_max_length": model_max_length,
                            "clean_up_tokenization_spaces": clean_up_tokenization_spaces,
                            "additional_special_tokens": self._additional}

    # -- languages -----------------------------------------------------------------------------------
    @staticmethod
    def get_lang_token(lang: str) -> str:
        return f"__{lang}__"

    def get_lang_id(self, lang: str) -> int:
        """Id of language `lang`'s token ("fr" -> id of `__fr__`)."""
        token = self.get_lang_token(lang)
        if token not in self.lang_token_to_id:
            raise TokenizerError(f"M2M100Tokenizer: language {lang!r} is not one of the {self.language_codes!r} "
                                 "codes (expected a code such as 'en' or 'fr')")
        return self.lang_token_to_id[token]

    @property
    def src_lang(self) -> str:
        return self._src_lang

    @src_lang.setter
    def src_lang(self, new_src_lang: str) -> None:
        self.set_src_lang_special_tokens(new_src_lang)
        self._src_lang = new_src_lang

    def set_src_lang_special_tokens(self, src_lang: str) -> None:
        """Sources: `[__src_lang__] tokens </s>`."""
        self.cur_lang_id = self.get_lang_id(src_lang)

    def set_tgt_lang_special_tokens(self, tgt_lang: str) -> None:
        """Targets: `[__tgt_lang__] tokens </s>`."""
        self.cur_lang_id = self.get_lang_id(tgt_lang)

    def _framing(self) -> tuple[list[int], list[int]]:
        return [self.cur_lang_id], [self.eos_token_id]

    # -- vocabulary ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.encoder) + len(self._special_languages)

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **{t: self.lang_token_to_id[t] for t in self._special_languages}}

    @property
    def all_special_tokens(self) -> list[str]:
        named = [self.bos_token, self.eos_token, self.unk_token, self.sep_token, self.pad_token]
        return list(dict.fromkeys([*named, *self._additional]))

    @property
    def all_special_ids(self) -> list[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def additional_special_tokens(self) -> list[str]:
        return list(self._additional)

    @property
    def bos_token_id(self) -> int:
        return self.encoder[self.bos_token]

    @property
    def sep_token_id(self) -> int:
        return self.encoder[self.sep_token]

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]:
        if isinstance(tokens, str):
            return self.lang_token_to_id.get(tokens) or self.encoder.get(tokens, self.unk_token_id)
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | list[int], skip_special_tokens: bool = False) -> str | list[str]:
        if isinstance(ids, int):
            return self.id_to_lang_token.get(ids) or self.decoder.get(ids, self.unk_token)
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self.convert_ids_to_tokens(i) for i in ids if i not in special]

    # -- encoding --------------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """Special and language tokens written in the text stay whole; the rest is split by the spm model."""
        specials = sorted(set(self.all_special_tokens), key=len, reverse=True)
        pieces: list[str] = []
        for chunk in re.split("(" + "|".join(map(re.escape, specials)) + ")", text):
            if chunk:
                pieces += [chunk] if chunk in specials else self.sp_model.encode(chunk, out_type=str)
        return pieces

    def target_language_id(self, lang: str) -> int:
        return self.get_lang_id(lang)

    # -- decoding --------------------------------------------------------------------------------------
    def convert_tokens_to_string(self, tokens: list[str], use_source_tokenizer: bool = False) -> str:
        """spm-decoded runs of pieces with named special tokens written in place (no added space)."""
        out, run = "", []
        for token in tokens:
            if token in self.all_special_tokens:
                out += self.sp_model.decode(run) + token
                run = []
            else:
                run.append(token)
        return (out + self.sp_model.decode(run)).strip()

    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               spaces_between_special_tokens: bool = True, **kwargs: Any) -> str:
        """Special language tokens stand apart (joined by a space, as 4.45's slow decode joins added tokens);
        other language tokens go through the spm decoder, which writes unknown pieces as they are."""
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else token_ids
        ids = [ids] if isinstance(ids, int) else list(ids)
        parts, run = [], []
        for token in self.convert_ids_to_tokens(ids, skip_special_tokens):
            if token in self._special_languages:
                text = self.convert_tokens_to_string(run) if run else ""
                parts += ([text] if text else []) + [token]
                run = []
            else:
                run.append(token)
        if run:
            parts.append(self.convert_tokens_to_string(run))
        text = (" " if spaces_between_special_tokens else "").join(parts)
        cleanup = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return clean_up_spaces(text) if cleanup else text

    # -- files -----------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> tuple[str, ...]:
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        spm, vocab = folder / FILES["spm_file"], folder / FILES["vocab_file"]
        if Path(self.spm_file).resolve() != spm.resolve():
            shutil.copyfile(self.spm_file, spm)
        vocab.write_text(json.dumps(self.encoder, indent=2, ensure_ascii=False), encoding="utf-8")
        config = {**self.init_kwargs, "src_lang": self._src_lang, "tgt_lang": self.tgt_lang,
                  "tokenizer_class": "M2M100Tokenizer"}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        special = {"bos_token": self.bos_token, "eos_token": self.eos_token, "sep_token": self.sep_token,
                   "unk_token": self.unk_token, "pad_token": self.pad_token}
        (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")
        return str(spm), str(vocab), str(folder / "tokenizer_config.json")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        kwargs.pop("_tokenizer_class", None)
        files = {key: resolve_file(pretrained_model_name_or_path, name, **hub) for key, name in FILES.items()}
        config_path = resolve_file(pretrained_model_name_or_path, "tokenizer_config.json", required=False, **hub)
        config = json.loads(Path(config_path).read_text(encoding="utf-8")) if config_path else {}
        for ignored in ("tokenizer_class", "added_tokens_decoder", "name_or_path", "tokenizer_file"):
            config.pop(ignored, None)  # the language tokens' ids follow from `language_codes`
        return cls(**files, **{**config, **kwargs})


__all__ = ["M2M100Tokenizer"]
