"""Read one rank's slice of a safetensors tensor with plain file reads.

A memory-mapped tensor that is sliced by columns (a row-parallel weight) touches every page of the
tensor, so each rank's RSS would grow to the whole checkpoint. Here rows ranges are read as the
contiguous bytes they are, and a column range is read a bounded chunk of rows at a time and copied out,
so a rank's memory holds its own share plus one chunk.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from ..loading import safetensors as st
from .plan import Slice

CHUNK_BYTES = 8 << 20  # rows read at once for a column slice


@dataclass(frozen=True)
class StoredTensor:
    """Where a tensor's bytes lie in a safetensors file."""

    path: str
    offset: int  # absolute byte offset of element 0
    dtype: torch.dtype
    shape: tuple[int, ...]


def stored_tensors(path: str | os.PathLike) -> dict[str, StoredTensor]:
    """Every tensor of one safetensors file, by checkpoint key (the header only is read)."""
    header, data_start = st.read_header(path)
    return {key: StoredTensor(str(path), data_start + info["data_offsets"][0], st.DTYPES[info["dtype"]],
                              tuple(info["shape"])) for key, info in header.items()}


def _read_into(handle, offset: int, target: torch.Tensor) -> None:
    view = memoryview(target.view(torch.uint8).reshape(-1).numpy())
    handle.seek(offset)
    if handle.readinto(view) != len(view):
        raise OSError(f"{handle.name}: short read at byte {offset}")


def read_slice(stored: StoredTensor, part: Slice) -> torch.Tensor:
    """The part of `stored` that `part` names, as a new tensor in the stored dtype."""
    shape, dtype = stored.shape, stored.dtype
    if part.zeros:
        return torch.zeros(shape, dtype=dtype)
    row_elems = math.prod(shape[1:]) if len(shape) > 1 else 1
    row_bytes = row_elems * dtype.itemsize
    with open(stored.path, "rb") as handle:
        if part.cols is not None:
            return _read_columns(handle, stored, part.cols, row_bytes)
        rows = part.rows if part.rows is not None else ((0, shape[0] if shape else 1),)
        out = torch.empty((sum(b - a for a, b in rows), *shape[1:]) if shape else (), dtype=dtype)
        flat, start = out.reshape(-1, row_elems) if shape else out.reshape(1, 1), 0
        for a, b in rows:
            if b > a:
                _read_into(handle, stored.offset + a * row_bytes, flat[start:start + b - a])
            start += b - a
        return out


def _read_columns(handle, stored: StoredTensor, cols: tuple[int, int], row_bytes: int) -> torch.Tensor:
    rows, width = stored.shape
    out = torch.empty(rows, cols[1] - cols[0], dtype=stored.dtype)
    chunk = max(1, CHUNK_BYTES // max(row_bytes, 1))
    buffer = torch.empty(min(chunk, rows), width, dtype=stored.dtype)
    for first in range(0, rows, chunk):
        count = min(chunk, rows - first)
        _read_into(handle, stored.offset + first * row_bytes, buffer[:count])
        out[first:first + count] = buffer[:count, cols[0]:cols[1]]
    return out


def slice_tensor(tensor: torch.Tensor, part: Slice) -> torch.Tensor:
    """The same selection from a tensor already in memory (.bin checkpoints, re-laid-out keys)."""
    if part.zeros:
        return torch.zeros_like(tensor)
    if part.cols is not None:
        return tensor[:, part.cols[0]:part.cols[1]].contiguous()
    if part.rows is None:
        return tensor
    return torch.cat([tensor[a:b] for a, b in part.rows]) if len(part.rows) > 1 else \
        tensor[part.rows[0][0]:part.rows[0][1]].contiguous()
