"""Read one rank's slice of a safetensors tensor, touching only the bytes of that slice.

Row ranges (column-parallel weights, vocabulary shards) are contiguous bytes: they are memory-mapped
views of just that range, as the one-process loader maps whole tensors (pages never used stay on disk).
A column range (a row-parallel weight) is strided: a memory-mapped tensor sliced by columns touches every
page of it, so every rank's RSS would grow to the whole checkpoint. It is read instead with one file read
per row straight into the rank's tensor, so a rank's memory holds its own share and nothing more.
"""
from __future__ import annotations

import math
import mmap
import os
from dataclasses import dataclass

import torch

from ..loading import safetensors as st
from .plan import Slice


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


def _mapped(handle, begin: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A copy-on-write memory-mapped view of the bytes [begin, begin + size) of the open file."""
    count = math.prod(shape)
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    map_start = begin - begin % mmap.ALLOCATIONGRANULARITY
    skip = begin - map_start
    mapping = mmap.mmap(handle.fileno(), skip + count * dtype.itemsize, offset=map_start, access=mmap.ACCESS_COPY)
    if skip % dtype.itemsize:  # unaligned: copy rather than view
        return torch.frombuffer(bytearray(mapping[skip:]), dtype=torch.uint8).view(dtype).reshape(shape)
    return torch.frombuffer(mapping, dtype=dtype, count=count, offset=skip).reshape(shape)


def read_slice(stored: StoredTensor, part: Slice) -> torch.Tensor:
    """The part of `stored` that `part` names, in the stored dtype."""
    shape, dtype = stored.shape, stored.dtype
    if part.zeros:
        return torch.zeros(shape, dtype=dtype)
    row_bytes = (math.prod(shape[1:]) if len(shape) > 1 else 1) * dtype.itemsize
    with open(stored.path, "rb") as handle:
        if part.cols is not None:
            return _read_columns(handle, stored, part.cols, row_bytes)
        if part.rows is None:
            return _mapped(handle, stored.offset, shape, dtype)
        pieces = [_mapped(handle, stored.offset + a * row_bytes, (b - a, *shape[1:]), dtype) for a, b in part.rows]
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def _read_columns(handle, stored: StoredTensor, cols: tuple[int, int], row_bytes: int) -> torch.Tensor:
    """Columns [c0, c1) of a 2-D tensor: one read per row into the output's row."""
    rows = stored.shape[0]
    out = torch.empty(rows, cols[1] - cols[0], dtype=stored.dtype)
    target = memoryview(out.view(torch.uint8).reshape(-1).numpy())
    skip, width = cols[0] * stored.dtype.itemsize, (cols[1] - cols[0]) * stored.dtype.itemsize
    for row in range(rows):
        handle.seek(stored.offset + row * row_bytes + skip)
        if handle.readinto(target[row * width:(row + 1) * width]) != width:
            raise OSError(f"{stored.path}: short read in row {row} of a tensor at byte {stored.offset}")
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
