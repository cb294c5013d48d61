"""Write a state dict as safetensors (or pytorch_model.bin), sharded by size (inside the folder that save.py
stages), and say which files of a folder belong to a model save."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import CheckpointError
from .checkpoint import BIN_INDEX, BIN_WEIGHTS, SAFE_INDEX, SAFE_WEIGHTS
from .save import atomic_path, atomic_write_text

_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
_SHARD_NAME = re.compile(r"model-\d{5}-of-\d{5}\.safetensors$")
_BIN_SHARD_NAME = re.compile(r"pytorch_model-\d{5}-of-\d{5}\.bin$")
# config.json (configuration_utils.CONFIG_NAME) and generation_config.json (generation's GENERATION_CONFIG_NAME)
_CONFIG_FILES = ("config.json", "generation_config.json")


def is_model_file(name: str) -> bool:
    """Whether a file named `name` is part of a model save (weights, their index, the configs): a new
    save replaces all of them, so none of an older model's files survive beside the new one."""
    return (name in _CONFIG_FILES or name in (SAFE_WEIGHTS, SAFE_INDEX, BIN_WEIGHTS, BIN_INDEX)
            or bool(_SHARD_NAME.fullmatch(name) or _BIN_SHARD_NAME.fullmatch(name)))


def parse_size(size: int | str) -> int:
    """'5GB' / '200MiB' / 1000 -> bytes (transformers' `max_shard_size` notation)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B)\s*", str(size).upper())
    if not match:
        raise CheckpointError(f"max_shard_size: expected bytes as int or a string like '5GB', got {size!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def plan_shards(state_dict: dict[str, torch.Tensor], max_shard_size: int) -> list[dict[str, torch.Tensor]]:
    """Greedy, in key order: a new shard starts when the next tensor would overflow the current one."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    current = 0
    for name, tensor in state_dict.items():
        size = tensor.numel() * tensor.element_size()
        if shards[-1] and current + size > max_shard_size:
            shards.append({})
            current = 0
        shards[-1][name] = tensor
        current += size
    return shards


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """A plain, contiguous tensor holding only its own bytes: a pickle of a view keeps its whole storage, and
    a Parameter subclass (bitsandbytes' Params4bit, ...) would be a class torch.load(weights_only=True) refuses."""
    tensor = tensor.detach().as_subclass(torch.Tensor).contiguous()
    return tensor.clone() if tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size() else tensor


def write_weights(folder: Path, state_dict: dict[str, torch.Tensor], max_shard_size: int | str,
                  safe_serialization: bool = True) -> list[str]:
    """Write the weights into `folder` as safetensors, or with `safe_serialization=False` as transformers'
    `pytorch_model.bin` (torch.save of plain tensors); stale weight files from earlier saves are removed.
    Returns file names."""
    shards = plan_shards(state_dict, parse_size(max_shard_size))
    single, index_name = (SAFE_WEIGHTS, SAFE_INDEX) if safe_serialization else (BIN_WEIGHTS, BIN_INDEX)
    if len(shards) == 1:
        names = [single]
    else:
        stem, suffix = single.rsplit(".", 1)
        names = [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.{suffix}" for i in range(len(shards))]
    for name, shard in zip(names, shards):
        with atomic_path(folder / name) as tmp:
            if safe_serialization:
                save_file({k: v.contiguous() for k, v in shard.items()}, str(tmp), metadata={"format": "pt"})
            else:
                torch.save({k: _plain(v) for k, v in shard.items()}, str(tmp))
    stale = [p for p in folder.iterdir() if is_model_file(p.name) and p.name not in _CONFIG_FILES
             and p.name not in names]
    for path in stale:
        path.unlink()
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state_dict.values())},
                 "weight_map": {key: name for name, shard in zip(names, shards) for key in shard}}
        atomic_write_text(folder / index_name, json.dumps(index, indent=2, sort_keys=True) + "\n")
        names.append(index_name)
    return names
