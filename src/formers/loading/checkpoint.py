"""Find a checkpoint's weight files (single, sharded, safetensors or .bin) and read them."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..errors import CheckpointError
from . import safetensors as st
from .hub import resolve_file

SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
BIN_WEIGHTS = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"


@dataclass
class CheckpointFiles:
    files: list[Path]
    safetensors: bool


def find_weight_files(path_or_repo_id: str | os.PathLike, **hub_kwargs) -> CheckpointFiles:
    """Resolve the weight files in preference order: safetensors, sharded safetensors, .bin, sharded .bin."""
    for single, index, safe in ((SAFE_WEIGHTS, SAFE_INDEX, True), (BIN_WEIGHTS, BIN_INDEX, False)):
        found = resolve_file(path_or_repo_id, single, required=False, **hub_kwargs)
        if found is not None:
            return CheckpointFiles([found], safe)
        index_path = resolve_file(path_or_repo_id, index, required=False, **hub_kwargs)
        if index_path is not None:
            return CheckpointFiles(_shards_of(path_or_repo_id, index_path, hub_kwargs), safe)
    raise CheckpointError(f"{str(path_or_repo_id)!r} has no weights: expected {SAFE_WEIGHTS}, {SAFE_INDEX}, "
                          f"{BIN_WEIGHTS} or {BIN_INDEX}")


def _shards_of(path_or_repo_id, index_path: Path, hub_kwargs) -> list[Path]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index_path}: not a valid shard index (expected a 'weight_map' object): {exc}")
    shards = []
    for name in sorted(set(weight_map.values())):
        shard = resolve_file(path_or_repo_id, name, required=False, **hub_kwargs)
        if shard is None:
            raise CheckpointError(f"{index_path} names shard {name!r}, which is missing")
        shards.append(shard)
    return shards


def iter_tensors(checkpoint: CheckpointFiles) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (key, tensor) over every file; safetensors are memory-mapped, .bin files load safely."""
    for path in checkpoint.files:
        tensors = st.load_mmap(path) if checkpoint.safetensors else _load_bin(path)
        yield from tensors.items()


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError for unsafe or broken files
        raise CheckpointError(f"{path}: cannot be loaded with torch.load(weights_only=True): "
                              f"{str(exc).splitlines()[0]}") from None


def checkpoint_dtype(checkpoint: CheckpointFiles) -> torch.dtype | None:
    """The first floating dtype stored in the checkpoint (what torch_dtype='auto' falls back to)."""
    if checkpoint.safetensors:
        for dtype in st.dtypes_in(checkpoint.files[0]):
            if dtype.is_floating_point:
                return dtype
        return None
    for _, tensor in iter_tensors(checkpoint):
        if tensor.is_floating_point():
            return tensor.dtype
    return None
