"""from_pretrained(..., tp_plan="auto"): shard the meta model, then stream only this rank's slices.

Checkpoint keys go through the family's key map by name; a key the map re-lays out (a transposed or fused
tensor: GPT-2, GPT-NeoX, Falcon, ...) is read whole through the memory map, converted, then sliced, so
only those families load more than their share transiently. .bin checkpoints are sliced after loading.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..loading import safetensors as st
from ..loading.checkpoint import find_weight_files, iter_tensors
from ..loading.key_map import KeyMap, _match
from .group import check_same_everywhere, current_group
from .plan import Slice, shard_model
from .reader import read_slice, slice_tensor, stored_tensors
from .save import install_consolidating_save

WHOLE = Slice()


def load_tensor_parallel(model: nn.Module, tp_plan: str, path: str | os.PathLike, hub: dict[str, Any], source,
                         key_map: KeyMap | None, quantization, device: torch.device
                         ) -> tuple[Iterator[tuple[str, Any]], torch.device]:
    """Shard `model` (built on meta) for this rank; return (name, tensor) pairs holding only this rank's
    slices, and the device the rank computes on (its GPU under NCCL when `device_map` named none)."""
    info = current_group(f"from_pretrained(tp_plan={tp_plan!r})")
    if source.config is not None:
        raise ConfigError("from_pretrained: tp_plan cannot be combined with gguf_file; load the safetensors folder")
    if quantization.config is not None or quantization.keep_quantized or \
            vars(model.config).get("quantization_config") is not None:
        raise ConfigError("from_pretrained: tp_plan cannot be combined with quantized weights")
    config = model.config
    check_same_everywhere(info, f"{type(model).__name__} {tp_plan} {config.to_json_string(use_diff=False)}",
                          f"from_pretrained(tp_plan={tp_plan!r})")
    full_model = copy.deepcopy(model)  # still whole-shaped, on meta: what save_pretrained consolidates into
    slices = shard_model(model, tp_plan, info)
    install_consolidating_save(model, full_model)
    if device.type == "cpu" and info.backend == "nccl":
        device = info.device()
    checkpoint = find_weight_files(path, **hub)
    names = _Names(model, full_model)
    if not checkpoint.safetensors:
        pairs = key_map.to_model(iter_tensors(checkpoint), model.config) if key_map else iter_tensors(checkpoint)
        return ((name, slice_tensor(names.whole(name, t, path), slices.get(name, WHOLE)))
                for name, t in names.resolve(pairs)), device
    return _stream(checkpoint.files, key_map, model.config, slices, names), device


class _Names:
    """Map loaded names onto the model's parameter names as _assign_weights does (with or without the
    base-model prefix); names the model lacks are passed through for the unexpected-key report. `whole`
    checks a tensor has the unsharded model's shape before it is sliced (a slice of the wrong tensor would
    have the right local shape and load silently)."""

    def __init__(self, model: nn.Module, full_model: nn.Module):
        self.expected = set(model.state_dict(keep_vars=True))
        self.prefix = model.base_model_prefix + "."
        self.family = type(model).__name__
        self.full_shapes = {name: tuple(t.shape) for name, t in full_model.state_dict(keep_vars=True).items()}

    def whole(self, name: str, tensor, where) -> Any:
        """`tensor` (anything with a .shape) unchanged, or CheckpointError if it is not the whole tensor."""
        full = self.full_shapes.get(name)
        if full is not None and tuple(tensor.shape) != full:
            raise CheckpointError(f"{where}: checkpoint tensor {name!r} has shape {tuple(tensor.shape)}, but "
                                  f"{self.family} expects {full} before tensor-parallel sharding: the checkpoint was "
                                  "saved under another plan (one rank's slices?) or for another config; save "
                                  "tensor-parallel models with save_pretrained() from every rank (whole tensors)")
        return tensor

    def name(self, key: str) -> str | None:
        if key in self.expected:
            return key
        alt = key[len(self.prefix):] if key.startswith(self.prefix) else self.prefix + key
        return alt if alt in self.expected else None

    def resolve(self, pairs) -> Iterator[tuple[str, Any]]:
        for key, tensor in pairs:
            name = self.name(key)
            yield (key, tensor) if name is None else (name, tensor)


def _relaid_out(key_map: KeyMap, key: str) -> bool:
    """Whether the key map transposes or splits this checkpoint key (it needs the tensor, not its name)."""
    head = key_map.prefix + "."
    inner = key.removeprefix(head)
    return any(_match(p, inner) is not None for p in key_map.transposed) or \
        any(_match(f.checkpoint, inner) is not None for f in key_map.fused)


def _stream(files, key_map: KeyMap | None, config, slices: dict[str, Slice], names: _Names):
    placeholder = torch.empty(0, device="meta")
    for path in files:
        for key, stored in stored_tensors(path).items():
            if key_map is not None and _relaid_out(key_map, key):
                whole = st.load_mmap(path)[key]
                for name, tensor in names.resolve(key_map.to_model([(key, whole)], config)):
                    yield name, slice_tensor(names.whole(name, tensor, path), slices.get(name, WHOLE))
                continue
            renamed = [k for k, _ in key_map.to_model([(key, stored)], config)] if key_map else [key]
            for new_key in renamed:  # a name only: the key map renamed or dropped it
                name = names.name(new_key)
                if name is None:
                    yield new_key, placeholder  # reported as unexpected; never read
                else:
                    yield name, read_slice(names.whole(name, stored, path), slices.get(name, WHOLE))
