"""Save a filled cache to a safetensors file and load it back (prefill a long prefix once, reuse it in
later processes). Stored: per layer `key.{i}` / `value.{i}` [B, Hkv, S, D] of the filled positions;
metadata names the format. Loading gives a DynamicCache, which any later generate() call accepts.
The file is written under a temporary name and renamed into place: a save killed at any point leaves
the previous file (or none), never a truncated one.
"""
from __future__ import annotations

import os

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CacheError, CheckpointError
from ..loading.save import atomic_path
from .base import Cache
from .dynamic import DynamicCache
from .static import StaticCache

_FORMAT = "formers-kv-cache-v1"


def _filled_layers(cache: Cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(cache, DynamicCache):
        return [cache[idx] for idx in range(len(cache))]
    if type(cache) is StaticCache:  # ring and hybrid layouts do not keep positions in order
        length = cache.get_seq_length()
        return [(k[:, :, :length], v[:, :, :length]) for k, v in zip(cache.key_cache, cache.value_cache)]
    raise CacheError(f"save_cache: {type(cache).__name__} cannot be saved; use a DynamicCache or StaticCache")


def save_cache(cache: Cache, path: str | os.PathLike) -> None:
    """Write the cached keys/values of every layer to the safetensors file `path`."""
    tensors = {}
    for idx, (keys, values) in enumerate(_filled_layers(cache)):
        tensors[f"key.{idx}"] = keys.contiguous()
        tensors[f"value.{idx}"] = values.contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, os.fspath(tmp), metadata={"format": _FORMAT, "layers": str(len(tensors) // 2)})


def load_cache(path: str | os.PathLike, device: torch.device | str | None = None) -> DynamicCache:
    """A DynamicCache holding what `save_cache` wrote to `path` (on `device`, default CPU)."""
    try:
        tensors = load_file(os.fspath(path), device=str(device) if device is not None else "cpu")
    except (OSError, ValueError, SafetensorError) as error:  # missing file, or not a safetensors file
        raise CheckpointError(f"load_cache: cannot read {os.fspath(path)!r} as a safetensors cache: {error}") from error
    layers = len(tensors) // 2
    cache = DynamicCache()
    for idx in range(layers):
        if f"key.{idx}" not in tensors or f"value.{idx}" not in tensors:
            raise CheckpointError(f"load_cache: {os.fspath(path)!r} lacks key.{idx}/value.{idx}; "
                                  f"not a file written by save_cache")
        cache.update(tensors[f"key.{idx}"], tensors[f"value.{idx}"], idx)
    return cache
