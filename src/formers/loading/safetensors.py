"""Memory-mapped safetensors reading: tensors are views of the file, not copies.

The format is an 8-byte little-endian header length, a JSON header mapping each name to
{dtype, shape, data_offsets}, then the raw bytes. Every extent is checked against the file size,
so a truncated file is reported by name instead of failing deep inside torch.
"""
from __future__ import annotations

import json
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
    """All tensors of a safetensors file as copy-on-write views of its memory map."""
    header, data_start = read_header(path)
    size = Path(path).stat().st_size
    if not header:
        return {}
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
    raw = torch.empty(0, dtype=torch.uint8).set_(storage)
    tensors = {}
    for name, info in header.items():
        dtype = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        chunk = raw[data_start + begin: data_start + end]
        if (data_start + begin) % dtype.itemsize:  # unaligned: copy rather than view
            chunk = chunk.clone()
        tensors[name] = chunk.view(dtype).reshape(info["shape"])
    return tensors
