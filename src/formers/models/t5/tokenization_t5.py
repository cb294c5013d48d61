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


__all__ = ["T5TokenizerFast"]
