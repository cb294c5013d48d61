"""GGUF checkpoints (llama.cpp's single-file format) loaded as transformers 4.45 names it:
`from_pretrained(repo_or_dir, gguf_file="model.Q4_0.gguf")` for configs, models and tokenizers.

reader.py parses the file (the `gguf` package), config.py maps architectures and metadata to family
configs, tensors.py maps tensor names/layouts, dequant.py decodes the ggml types, tokenizer.py rebuilds
the tokenizer. Weights are dequantized to float at load, as 4.45 does, unless the caller keeps them
quantized (`keep_quantized=True`, see formers.quantization).
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import CheckpointError
from ..loading.hub import resolve_file
from .config import gguf_config_dict
from .reader import GGUFFile, read_gguf
from .tensors import QuantizedBlocks, iter_gguf_tensors

__all__ = ["GGUFFile", "QuantizedBlocks", "open_gguf", "gguf_config", "gguf_tensors", "load_gguf_tokenizer"]


def open_gguf(path_or_repo_id: str | os.PathLike, gguf_file: str | os.PathLike, **hub: Any) -> GGUFFile:
    """Find `gguf_file` in a local folder or hub repo (or, failing that, take it as a path) and parse it."""
    found = resolve_file(path_or_repo_id, str(gguf_file), required=False, **hub)
    if found is None and os.path.isfile(gguf_file):
        found = gguf_file
    if found is None:
        raise CheckpointError(f"GGUF file {str(gguf_file)!r} not found in {str(path_or_repo_id)!r} (nor as a path)")
    return read_gguf(found)


def gguf_config(gguf: GGUFFile, **overrides: Any):
    """The family config described by the file's metadata (kwargs override fields, as in from_pretrained)."""
    from ..models.registry import family

    data = gguf_config_dict(gguf)
    return family(data["model_type"]).CONFIG_CLASS.from_dict(data, **overrides)


def gguf_tensors(gguf: GGUFFile, keep_types: tuple[str, ...] = ()):
    """(transformers key, tensor or QuantizedBlocks) pairs, one tensor decoded at a time."""
    return iter_gguf_tensors(gguf, gguf_config_dict(gguf), keep_types)


def load_gguf_tokenizer(cls, path_or_repo_id: str | os.PathLike, gguf_file: str | os.PathLike, **kwargs: Any):
    """The tokenizer stored in the file, as `cls` (or, for the generic class, the class transformers maps the
    file's architecture to). Explicit kwargs (padding_side, special tokens, ...) override the file."""
    from ..tokenization.classes import tokenizer_class_for
    from ..tokenization.fast import PreTrainedTokenizerFast
    from .tokenizer import gguf_tokenizer_parts

    hub = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
    gguf = open_gguf(path_or_repo_id, gguf_file, **hub)
    class_name, backend, file_kwargs = gguf_tokenizer_parts(gguf)
    if cls is PreTrainedTokenizerFast:
        cls = tokenizer_class_for(class_name) or PreTrainedTokenizerFast  # (T5TokenizerFast lives with its family)
    kwargs.pop("_tokenizer_class", None)
    return cls(tokenizer_object=backend, _tokenizer_class=class_name,
               **{**file_kwargs, "name_or_path": str(path_or_repo_id), **kwargs})
