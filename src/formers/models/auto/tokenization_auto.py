"""AutoTokenizer: pick the tokenizer class named by tokenizer_config.json and load it.

Names formers has a class for (LlamaTokenizer(Fast), GemmaTokenizer(Fast), CodeLlamaTokenizer(Fast),
GPT2Tokenizer(Fast), Qwen2Tokenizer(Fast)) load that class, its "Fast" twin unless use_fast=False, as in
transformers; other names are served by `PreTrainedTokenizerFast` with that class's defaults (see
tokenization/profiles.py). When the config names no class, config.json's `model_type` decides.
"""
from __future__ import annotations

import json
import os
from typing import Any

from ...errors import UnsafeCheckpointError
from ...loading.hub import resolve_file
from ...tokenization.classes import tokenizer_class_for
from ...tokenization.fast import PreTrainedTokenizerFast
from ...tokenization.profiles import MODEL_TYPE_TO_TOKENIZER



def _json_field(path_or_repo_id, filename: str, field: str, hub: dict[str, Any]) -> Any:
    path = resolve_file(path_or_repo_id, filename, required=False, **hub)
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None  # the tokenizer loader reports a broken tokenizer_config.json with its own message
    return data.get(field) if isinstance(data, dict) else None


def _only_sentencepiece(path_or_repo_id, prefix: str, hub: dict[str, Any]) -> bool:
    if resolve_file(path_or_repo_id, f"{prefix}tokenizer.json", required=False, **hub) is not None:
        return False
    return resolve_file(path_or_repo_id, f"{prefix}tokenizer.model", required=False, **hub) is not None


class AutoTokenizer:
    """Factory: `AutoTokenizer.from_pretrained(...)` returns the class tokenizer_config.json names."""

    def __init__(self) -> None:
        raise EnvironmentError("AutoTokenizer is built with AutoTokenizer.from_pretrained(...)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *inputs: Any,
                        revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                        local_files_only: bool = False, token: str | bool | None = None,
                        trust_remote_code: bool = False, use_fast: bool = True, **kwargs: Any) -> PreTrainedTokenizerFast:
        """Load the tokenizer of a local folder or hub repo (tokenizer.json, or tokenizer.model for Llama)."""
        if trust_remote_code:
            raise UnsafeCheckpointError(f"{str(pretrained_model_name_or_path)!r}: trust_remote_code=True is not "
                                        "supported; formers never runs code shipped with a checkpoint")
        hub = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_files_only, "token": token}
        if kwargs.get("gguf_file") is not None:  # the class follows the file's architecture
            return PreTrainedTokenizerFast.from_pretrained(pretrained_model_name_or_path, *inputs, **hub, **kwargs)
        config = kwargs.pop("config", None)
        tokenizer_type = kwargs.pop("tokenizer_type", None)
        subfolder = kwargs.get("subfolder") or ""
        prefix = f"{subfolder.rstrip('/')}/" if subfolder else ""
        class_name = _json_field(pretrained_model_name_or_path, f"{prefix}tokenizer_config.json", "tokenizer_class",
                                 hub)
        if class_name is None and config is not None:
            class_name = getattr(config, "tokenizer_class", None)
        if class_name is None:
            model_type = tokenizer_type or getattr(config, "model_type", None) or _json_field(
                pretrained_model_name_or_path, "config.json", "model_type", hub)
            class_name = MODEL_TYPE_TO_TOKENIZER.get(model_type) if model_type else None
        if class_name is None and _only_sentencepiece(pretrained_model_name_or_path, prefix, hub):
            class_name = "LlamaTokenizer"  # a bare tokenizer.model: the Llama converter is the common case
        tokenizer_cls = tokenizer_class_for(class_name, use_fast) or PreTrainedTokenizerFast
        return tokenizer_cls.from_pretrained(pretrained_model_name_or_path, *inputs,
                                             _tokenizer_class=class_name or "PreTrainedTokenizerFast", **hub, **kwargs)
