"""Memory-mapped safetensors reading: tensors are views of the file, not copies.

The format is an 8-byte little-endian header length, a JSON header mapping each name to
{dtype, shape, data_offsets}, then the raw bytes. Every extent is checked against the file size,
so a truncated file is reported by name instead of failing deep inside torch.
"""
from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path

import torch

from ..errors import CheckpointError

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


def read_header(path: str | os.PathLike) -> tuple[dict, int]:
    """Return (header without __metadata__, byte offset where tensor data starts)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if 8 + header_len > size:
            raise CheckpointError(f"{path}: truncated safetensors file (header says {header_len} bytes, "
                                  f"file has {size})")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: corrupt safetensors header ({exc})") from None
    header.pop("__metadata__", None)
    data_start = 8 + header_len
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if data_start + end > size:
            raise CheckpointError(f"{path}: truncated safetensors file: tensor {name!r} ends at byte "
                                  f"{data_start + end}, file has {size}")
        if info["dtype"] not in DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']!r}")
    return header, data_start


def dtypes_in(path: str | os.PathLike) -> list[torch.dtype]:
    """Dtypes of the stored tensors, in header order."""
    header, _ = read_header(path)
    return [DTYPES[info["dtype"]] for info in header.values()]


def load_mmap(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file as copy-on-write views of the file.

    Each tensor gets its own mapping, so the pages of a tensor that is later replaced (converted to
    another dtype, re-laid out, moved to a GPU) are released as soon as it is dropped.
    """
    header, data_start = read_header(path)
    tensors = {}
    with open(path, "rb") as handle:
        for name, info in header.items():
            dtype = DTYPES[info["dtype"]]
            begin, end = (data_start + offset for offset in info["data_offsets"])
            if end == begin:
                tensors[name] = torch.empty(info["shape"], dtype=dtype)
                continue
            map_start = begin - begin % mmap.ALLOCATIONGRANULARITY
            mapping = mmap.mmap(handle.fileno(), end - map_start, offset=map_start, access=mmap.ACCESS_COPY)
            skip = begin - map_start
            if skip % dtype.itemsize:  # unaligned: copy rather than view
                flat = torch.frombuffer(bytearray(mapping[skip:]), dtype=torch.uint8).view(dtype)
            else:
                flat = torch.frombuffer(mapping, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=skip)
            tensors[name] = flat.reshape(info["shape"])
    return tensors
