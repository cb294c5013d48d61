"""T5TokenizerFast: T5's defaults (`</s>` appended by the backend, `<pad>`, `<unk>`, 100 `<extra_id_N>` sentinels)
over the generic fast tokenizer; the ids come from the checkpoint's tokenizer.json. A folder's SentencePiece
`spiece.model` travels with save_pretrained (4.45 rebuilds from it when the config sets add_prefix_space)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ...loading.hub import resolve_file
from ...tokenization.fast import PreTrainedTokenizerFast

SPIECE = "spiece.model"


class T5TokenizerFast(PreTrainedTokenizerFast):
    profile_name = "T5Tokenizer"
    positional_files = ("vocab_file", "tokenizer_file")
    _spiece: str | None = None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *init_inputs: Any,
                        **kwargs: Any) -> T5TokenizerFast:
        tokenizer = super().from_pretrained(pretrained_model_name_or_path, *init_inputs, **kwargs)
        if kwargs.get("gguf_file") is None:
            hub = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
            subfolder = kwargs.get("subfolder") or ""
            name = f"{subfolder.rstrip('/')}/{SPIECE}" if subfolder else SPIECE
            tokenizer._spiece = resolve_file(pretrained_model_name_or_path, name, required=False, **hub)
        return tokenizer

    def save_pretrained(self, save_directory: str | os.PathLike, legacy_format: bool | None = None,
                        filename_prefix: str | None = None, **kwargs: Any) -> tuple[str, ...]:
        written = super().save_pretrained(save_directory, legacy_format=legacy_format, filename_prefix=filename_prefix,
                                          **kwargs)
        if self._spiece is None or legacy_format is False:
            return written
        target = Path(save_directory) / (f"{filename_prefix}-{SPIECE}" if filename_prefix else SPIECE)
        if Path(self._spiece).resolve() != target.resolve():
            shutil.copyfile(self._spiece, target)
        return (*written, str(target))


class SlowSentencePieceDecoding:
    """decode() as 4.45's slow SentencePiece classes (T5Tokenizer, MBart50Tokenizer) write text, for a slow
    name served by the fast implementation: tokens from `_split_ids()` (T5's sentinels) stand apart, joined to
    the runs between them by a space; inside a run, each named special token is preceded by a space (unless it
    follows another special token) and the text is stripped. Pieces are decoded by the fast backend."""

    def _split_ids(self) -> set[int]:
        return set()

    def decode(self, token_ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None,
               spaces_between_special_tokens: bool = True, **kwargs: Any) -> str:
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else token_ids
        ids = [ids] if isinstance(ids, int) else list(ids)
        special, split = set(self.all_special_ids), self._split_ids()
        parts, run = [], []
        for index in ids:
            if skip_special_tokens and index in special:
                continue
            if index in split:
                text = self._run_text(run, special) if run else ""
                parts += ([text] if text else []) + [self.convert_ids_to_tokens(index)]
                run = []
            else:
                run.append(index)
        if run:
            parts.append(self._run_text(run, special))
        text = (" " if spaces_between_special_tokens else "").join(parts)
        cleanup = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None \
            else clean_up_tokenization_spaces
        return self.clean_up_tokenization(text) if cleanup else text

    def _run_text(self, run: list[int], special: set[int]) -> str:
        out, pieces, after_special = "", [], False
        for index in run:
            if index in special:
                out += ("" if after_special else " ") + self._tokenizer.decode(pieces, skip_special_tokens=False) + \
                    self.convert_ids_to_tokens(index)
                pieces, after_special = [], True
            else:
                pieces.append(index)
                after_special = False
        return (out + self._tokenizer.decode(pieces, skip_special_tokens=False)).strip()


class T5Tokenizer(SlowSentencePieceDecoding, T5TokenizerFast):
    """The slow name, served by the fast implementation over the folder's tokenizer.json: its ids and decoded
    text equal transformers 4.45.2's slow T5Tokenizer (legacy SentencePiece) on the same files (tested)."""

    @property
    def is_fast(self) -> bool:
        return False

    def _split_ids(self) -> set[int]:
        return set(self.convert_tokens_to_ids(self.additional_special_tokens))  # the <extra_id_N> sentinels


# transformers 4.45 defines mT5's tokenizers as these very classes (mT5 differs only in its vocabulary file).
MT5Tokenizer = T5Tokenizer
MT5TokenizerFast = T5TokenizerFast

__all__ = ["MT5Tokenizer", "MT5TokenizerFast", "T5Tokenizer", "T5TokenizerFast"]
