"""Open a GGUF file with the `gguf` package's reader and turn its failures into formers errors.

A GGUF file is a header (magic "GGUF", version, counts), key/value metadata ("general.architecture",
"llama.block_count", "tokenizer.ggml.tokens", ...) and tensors stored in ggml's layout: shapes listed
innermost-first (ne0 = row length) and quantized types stored as rows of fixed-size blocks. This module
reads the metadata into plain Python values and hands out each tensor's raw bytes untouched;
dequant.py turns them into torch tensors.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError

GGUF_MAGIC = b"GGUF"


def _gguf_package():
    try:
        import gguf
    except ImportError:
        raise CheckpointError("loading a GGUF file needs the `gguf` package: pip install 'formers[gguf]' "
                              "(or pip install gguf)") from None
    return gguf


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor as stored: ggml type name, shape in torch order ([rows, row length]) and raw data."""

    name: str
    type_name: str  # "F32", "Q4_0", ...
    shape: tuple[int, ...]
    data: np.ndarray  # read-only memory map: typed for float types, uint8 [.., bytes per row] for blocks


@dataclass
class GGUFFile:
    path: Path
    metadata: dict[str, Any]
    tensors: list[GGUFTensor]

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise CheckpointError(f"{self.path}: metadata key 'general.architecture' is missing; "
                                  "expected e.g. 'llama'")
        return arch

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)


def _check_magic(path: Path) -> None:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise CheckpointError(f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")


def _explain(path: Path, exc: Exception) -> CheckpointError:
    message = str(exc)
    if "GGMLQuantizationType" in message:
        return CheckpointError(f"{path}: a tensor has an unknown ggml type ({message}); the file needs a "
                               "newer gguf package or is corrupt")
    if "version" in message:
        return CheckpointError(f"{path}: unsupported GGUF version ({message})")
    return CheckpointError(f"{path}: truncated or corrupt GGUF file (the header, metadata or tensor data "
                           f"ends early or is inconsistent: {type(exc).__name__}: {message})")


def read_gguf(path: str | os.PathLike) -> GGUFFile:
    """Parse `path` (metadata and tensor table; tensor data stays memory-mapped). The gguf package's reader
    takes seconds on a large vocabulary, so the last few parses are kept: loading the config, the model and
    the tokenizer of one file parses it once."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file {str(path)!r} does not exist")
    stat = path.stat()
    return _read_cached(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_cached(path: Path, size: int, mtime_ns: int) -> GGUFFile:
    _check_magic(path)
    gguf = _gguf_package()
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, TypeError, KeyError, OverflowError) as exc:
        raise _explain(path, exc) from None
    metadata = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    tensors = []
    for tensor in reader.tensors:
        shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
        block, type_size = gguf.GGML_QUANT_SIZES[tensor.tensor_type]
        if tensor.data.nbytes != int(np.prod(shape)) * type_size // block:
            raise CheckpointError(f"{path}: tensor {tensor.name!r} is truncated ({tensor.data.nbytes} of "
                                  f"{int(np.prod(shape)) * type_size // block} bytes present)")
        tensors.append(GGUFTensor(tensor.name, tensor.tensor_type.name, shape, tensor.data))
    return GGUFFile(path, metadata, tensors)
