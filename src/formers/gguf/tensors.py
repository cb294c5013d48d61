"""GGUF tensors -> transformers checkpoint keys and layouts.

`blk.3.attn_q.weight` becomes `model.layers.3.self_attn.q_proj.weight`; llama.cpp's row interleave of
Q/K (it converts HF's "rotate half" rope to its own pairwise layout) is undone, and Gemma's (1 + w)
norm weights are shifted back. Tensors come out one at a time, dequantized to float32, or, for the
types the quantization package can keep, as `QuantizedBlocks` (raw ggml blocks, rows in HF order, copied
out of the memory map piece by piece).
Each tensor's file pages are dropped from resident memory once it is decoded (GGUFFile.release).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError
from .architectures import IGNORED_TENSORS, ArchSpec, arch_spec
from .dequant import BLOCK_LAYOUT, dequantize
from .reader import GGUFFile, GGUFTensor


@dataclass
class QuantizedBlocks:
    """A 2-D weight kept in its ggml blocks: `raw` is uint8 [rows, bytes per row], rows in HF order."""

    type_name: str
    shape: tuple[int, int]
    raw: Tensor

    def dequantize(self) -> Tensor:
        return dequantize(self.raw, self.type_name, self.shape)

    def split_rows(self, split: Callable[[Tensor], list[Tensor]]) -> list["QuantizedBlocks"]:
        """This weight cut by rows: `split` cuts the raw block rows as it would the float weight's rows (each row's
        blocks stay whole), e.g. a fused qkv projection into its parts."""
        return [QuantizedBlocks(self.type_name, (part.shape[0], self.shape[1]), part) for part in split(self.raw)]


def raw_bytes(tensor: GGUFTensor) -> Tensor:
    """The tensor's stored bytes as a uint8 torch tensor [rows, bytes per row] (no copy: memory-mapped,
    read-only; every consumer below makes a new tensor from it)."""
    data = np.asarray(tensor.data).view(np.uint8)
    if len(tensor.shape) > 1:
        rows = int(np.prod(tensor.shape[:-1]))
    else:  # a vector: one row of blocks, or one row per element for float types (so biases can be permuted)
        rows = tensor.shape[0] if BLOCK_LAYOUT[tensor.type_name][0] == 1 else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that the memory map is not writable
        return torch.from_numpy(data).reshape(rows, -1)


ARENA_TYPES = ("Q8_0", "Q4_0")  # kept byte for byte as layer weights (QuantizedLinear q8_0 / q4_0)


class _Arena:
    """One 2 MiB-aligned block advised to use transparent huge pages, holding the kept Q8_0 / Q4_0 tensors in
    file order (the order a decode step reads them): the block kernels read ~1.3x faster without a TLB miss
    every 4 KiB (kernels/decode.py measured it for float weights). Pages become resident as tensors are
    copied in, so loading memory is unchanged; elsewhere tensors get ordinary memory."""

    def __init__(self, sizes: list[int]):
        from ..kernels.decode import _huge_page_block

        total = sum(-(-size // 64) * 64 for size in sizes)
        self.block = _huge_page_block(total) if total >= (2 << 20) else None
        self.offset = 0

    def take(self, shape: tuple[int, int]) -> Tensor:
        nbytes = shape[0] * shape[1]
        if self.block is None or self.offset + nbytes > self.block.numel():
            return torch.empty(shape, dtype=torch.uint8)
        view = self.block[self.offset:self.offset + nbytes].view(shape)
        self.offset += -(-nbytes // 64) * 64
        return view


def _copy_releasing(gguf: GGUFFile, tensor: GGUFTensor, raw: Tensor, out: Tensor) -> Tensor:
    """`raw` [rows, bytes per row], memory-mapped, copied into `out` ~1 MiB at a time with each piece's file pages
    dropped once copied, so a large tensor (a kept embedding) is never resident twice."""
    width = raw.shape[1]
    step = max(1, (1 << 20) // width)
    for start in range(0, raw.shape[0], step):
        out[start:start + step] = raw[start:start + step]
        gguf.release_range(tensor.offset + start * width, min(step, raw.shape[0] - start) * width)
    return out


def hf_name(name: str, spec: ArchSpec) -> str | None:
    """The transformers key of a GGUF tensor name (None when the architecture has no such tensor)."""
    parts = name.split(".")
    if len(parts) == 5 and parts[1] == "blk" and parts[0] in spec.stacks:  # enc.blk.<i>.<kind>.<leaf> (T5)
        kind = f"{parts[0]}.{parts[3]}"
        if kind in spec.layer_tensors:
            return ".".join([spec.stacks[parts[0]], parts[2], spec.layer_tensors[kind], parts[4]])
        return None
    whole = ".".join(parts[2:])  # a whole name the spec maps by itself (Mamba2's ssm_dt.bias: mixer.dt_bias)
    if len(parts) == 4 and parts[0] == "blk" and whole in spec.layer_tensors:
        return ".".join([spec.layer_prefix, parts[1], spec.layer_tensors[whole]])
    if len(parts) in (3, 4) and parts[0] == "blk" and parts[2] in spec.layer_tensors:  # (Mamba's ssm_a: no leaf)
        return ".".join([spec.layer_prefix, parts[1], spec.layer_tensors[parts[2]], *parts[3:]])
    stem, _, leaf = name.rpartition(".")
    if stem in spec.global_tensors:
        return f"{spec.global_tensors[stem]}.{leaf}"
    return None


def _layer_kind(name: str) -> str:
    """`attn_q` for `blk.3.attn_q.weight` and `ssm_a` for `blk.3.ssm_a` ("" for global tensors)."""
    parts = name.split(".")
    return parts[2] if len(parts) in (3, 4) and parts[0] == "blk" else ""


def _converter(name: str, spec: ArchSpec) -> Callable[[Tensor], Tensor] | None:
    """How the spec turns llama.cpp's values of this layer tensor into the checkpoint's ("ssm_a", "ssm_norm.weight")."""
    return spec.converted.get(".".join(name.split(".")[2:]))


def _is_conv1d_weight(name: str, spec: ArchSpec) -> bool:
    return _layer_kind(name) in spec.conv1d and name.endswith(".weight")


def unpermute_rows(rows: Tensor, heads: int) -> Tensor:
    """Invert llama.cpp's Q/K permutation: per head, rows (0, half, 1, half+1, ...) back to (0, 1, ...).

    rows: [heads * D, ...] (weights, biases or raw block rows)."""
    shape = rows.shape
    return rows.reshape(heads, -1, 2, *shape[1:]).transpose(1, 2).reshape(shape)


def ungroup_qkv(rows: Tensor, heads: int, kv_heads: int) -> Tensor:
    """Invert llama.cpp's regrouping of a fused query/key/value projection: its rows [all queries; all keys; all
    values] back to the checkpoint's per kv head [that head's queries; its key; its value].

    rows: [(heads + 2 * kv_heads) * D, ...] (weights, biases or raw block rows)."""
    shape = rows.shape
    per_group = heads // kv_heads
    grouped = rows.reshape(heads + 2 * kv_heads, -1)
    queries = grouped[:heads].reshape(kv_heads, per_group, -1)
    keys, values = grouped[heads:heads + kv_heads, None], grouped[heads + kv_heads:, None]
    return torch.cat([queries, keys, values], dim=1).reshape(shape)


def _heads_for(name: str, config: dict[str, Any]) -> int | None:
    if ".attn_q." in name:
        return config["num_attention_heads"]
    if ".attn_k." in name:
        return config.get("num_key_value_heads") or config["num_attention_heads"]
    return None


def iter_gguf_tensors(gguf: GGUFFile, config: dict[str, Any],
                      keep_types: tuple[str, ...] = ()) -> Iterator[tuple[str, Tensor | QuantizedBlocks]]:
    """(transformers key, float32 tensor) per GGUF tensor; 2-D weights whose type is in `keep_types` come
    as QuantizedBlocks instead. `config` is the dict from gguf_config_dict (head counts)."""
    _, spec = arch_spec(gguf)

    def kept(tensor: GGUFTensor) -> bool:  # (a tensor the spec converts or joins is decoded)
        return (tensor.type_name in keep_types and len(tensor.shape) == 2 and not _is_conv1d_weight(tensor.name, spec)
                and _converter(tensor.name, spec) is None and _layer_kind(tensor.name) not in spec.joined)

    pieces: dict[str, dict[int, Tensor]] = {}  # joined checkpoint tensors whose parts are still arriving

    arena = _Arena([t.data.nbytes for t in gguf.tensors if t.type_name in ARENA_TYPES and kept(t)])
    for tensor in gguf.tensors:
        if tensor.name in IGNORED_TENSORS:
            continue
        name = hf_name(tensor.name, spec)
        if name is None:
            raise CheckpointError(f"{gguf.path}: tensor {tensor.name!r} has no counterpart in the "
                                  f"{spec.model_type} family")
        if tensor.type_name not in BLOCK_LAYOUT:
            raise CheckpointError(f"{gguf.path}: tensor {tensor.name!r} has ggml type {tensor.type_name}; formers "
                                  f"reads {', '.join(BLOCK_LAYOUT)}")
        raw = raw_bytes(tensor)
        mapped = raw.data_ptr()
        heads = _heads_for(tensor.name, config) if spec.permuted_qk else None
        if heads is not None:
            raw = unpermute_rows(raw, heads)  # rows hold whole blocks: permute before decoding
        if spec.grouped_qkv is not None and _layer_kind(tensor.name) == "attn_qkv":
            raw = ungroup_qkv(raw, *spec.grouped_qkv(config))
        conv1d = _is_conv1d_weight(tensor.name, spec)
        if kept(tensor):
            if tensor.type_name in ARENA_TYPES:
                owned = arena.take(tuple(raw.shape))
            else:
                owned = torch.empty(raw.shape, dtype=torch.uint8)
            if raw.data_ptr() == mapped:
                _copy_releasing(gguf, tensor, raw, owned)
            else:  # unpermuting made a copy already
                owned.copy_(raw)
            yield name, QuantizedBlocks(tensor.type_name, tensor.shape, owned)
            gguf.release(tensor)
            continue
        value = dequantize(raw.contiguous(), tensor.type_name, tensor.shape)
        if value.data_ptr() == raw.data_ptr():
            value = value.clone()  # F32 data still points into the read-only memory map
        gguf.release(tensor)
        if spec.norm_offset and tensor.name.endswith("norm.weight"):
            value = value - spec.norm_offset
        if conv1d:
            value = value.t().contiguous()  # back to the checkpoint's [in, out]; the family's key map handles it
        if _layer_kind(tensor.name) in spec.row_vectors:
            value = value.reshape(1, -1)
        convert = _converter(tensor.name, spec)
        if convert is not None:
            value = convert(value)
        if _layer_kind(tensor.name) in spec.joined:
            parts = pieces.setdefault(name, {})
            parts[spec.joined[_layer_kind(tensor.name)]] = value
            if len(parts) == len(spec.joined):
                yield name, torch.cat([parts[i] for i in range(len(parts))], dim=-2)
                del pieces[name]
            continue
        if "{}" in name:  # stacked experts [experts, rows, cols] -> one checkpoint tensor per expert
            yield from ((name.format(index), expert) for index, expert in enumerate(value.unbind(0)))
            continue
        yield name, value
    if pieces:
        name = next(iter(pieces))
        raise CheckpointError(f"{gguf.path}: {name} is held in {len(spec.joined)} tensors "
                              f"({', '.join(sorted(spec.joined))}); the file has only some of them")
