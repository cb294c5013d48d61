"""Where from_pretrained's weights come from: the folder's safetensors/.bin files, or one GGUF file
(`gguf_file=`), which also carries the config. Both hand out (checkpoint key, tensor) pairs lazily."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from .checkpoint import checkpoint_dtype, find_weight_files, iter_tensors


@dataclass
class WeightSource:
    tensors: Callable[[], Iterator[tuple[str, Any]]]
    stored_dtype: Callable[[], torch.dtype | None]
    config: Any = None  # the config the source itself describes (GGUF metadata), else None


def open_weights(path_or_repo_id: str | os.PathLike, gguf_file: str | os.PathLike | None,
                 keep_types: tuple[str, ...], hub: dict[str, Any]) -> WeightSource:
    if gguf_file is not None:
        from ..gguf import gguf_config, gguf_tensors, open_gguf

        gguf = open_gguf(path_or_repo_id, gguf_file, **hub)
        # as transformers 4.45: GGUF weights are dequantized to float32 unless torch_dtype says otherwise
        return WeightSource(lambda: gguf_tensors(gguf, keep_types), lambda: torch.float32, gguf_config(gguf))
    checkpoint = find_weight_files(path_or_repo_id, **hub)
    return WeightSource(lambda: iter_tensors(checkpoint), lambda: checkpoint_dtype(checkpoint))
