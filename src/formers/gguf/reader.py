"""Read a GGUF file's header, metadata and tensor table; bad files raise formers errors naming the problem.

A GGUF file is a header (magic "GGUF", version, counts), key/value metadata ("general.architecture",
"llama.block_count", "tokenizer.ggml.tokens", ...) and tensors stored in ggml's layout: shapes listed
innermost-first (ne0 = row length) and quantized types stored as rows of fixed-size blocks. This module
reads the metadata into plain Python values and hands out each tensor's raw bytes untouched;
dequant.py turns them into torch tensors.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import os
import struct
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
    offset: int = 0  # where the data starts in the file


@dataclass
class GGUFFile:
    path: Path
    metadata: dict[str, Any]
    tensors: list[GGUFTensor]
    mapping: mmap.mmap | None = None  # the memory map the tensors' data lives in

    def release(self, tensor: GGUFTensor) -> None:
        """Drop `tensor`'s pages from this process's resident memory once it has been copied out. Pages
        of a memory-mapped file count in RSS while mapped; without this, loading a file leaves all of it
        resident beside the model built from it. The data stays readable (it is paged in again if read)."""
        self.release_range(tensor.offset, tensor.data.nbytes)
        _return_freed_heap()

    def release_range(self, offset: int, nbytes: int) -> None:
        """Drop the pages of file bytes [offset, offset + nbytes) from resident memory (see release)."""
        if self.mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            start = offset - offset % mmap.PAGESIZE
            end = min(offset + nbytes, len(self.mapping))
            if end > start:
                self.mapping.madvise(mmap.MADV_DONTNEED, start, end - start)

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str):
            raise CheckpointError(f"{self.path}: metadata key 'general.architecture' is missing; "
                                  "expected e.g. 'llama'")
        return arch

    def get(self, key: str, default: Any = None) -> Any:
        value = self.metadata.get(key, default)
        if isinstance(value, _LazyStrings):  # decoded on first use, then kept
            value = self.metadata[key] = value.load()
        return value


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def _return_freed_heap() -> None:
    """Hand glibc's free heap pages back to the system. Decoding a tensor allocates temporaries of a few MiB;
    once glibc has seen such a block freed it serves later ones from its heap, where model tensors allocated
    afterwards pin them: a float32 load of a 135M Q4_0 file retained up to ~200 MiB of freed temporaries
    (measured; docs/gguf_and_quantization.md). malloc_trim releases free pages anywhere in the heap."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class _Cursor:
    """Sequential little-endian reads over the memory-mapped header; reading past the end is 'truncated'."""

    def __init__(self, path: Path, buffer: mmap.mmap):
        self.path, self.buffer, self.pos = path, buffer, 0

    def take(self, size: int) -> memoryview:
        if self.pos + size > len(self.buffer):
            raise CheckpointError(f"{self.path}: truncated GGUF file (the header or metadata ends at byte "
                                  f"{len(self.buffer)}, {self.pos + size} needed)")
        view = memoryview(self.buffer)[self.pos:self.pos + size]
        self.pos += size
        return view

    def scalar(self, code: str):
        return struct.unpack(code, self.take(struct.calcsize(code)))[0]

    def string(self) -> str:
        return bytes(self.take(self.scalar("<Q"))).decode("utf-8", errors="replace")

    def value(self, kind: int):
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.scalar("<I"), self.scalar("<Q")
            if item == _STRING and count > _LAZY_STRINGS:
                return self.skip_strings(count)
            if item == _STRING:
                return [self.string() for _ in range(count)]
            if item == _ARRAY:
                return [self.value(self.scalar("<I")) for _ in range(count)]
            code = self._code(item)
            return np.frombuffer(self.take(count * struct.calcsize(code)), dtype=code).tolist()
        return self.scalar(self._code(kind))

    def skip_strings(self, count: int) -> "_LazyStrings":
        """Step over `count` strings, to be decoded only if asked for (a model load never reads the vocabulary)."""
        start = self.pos
        for _ in range(count):
            self.take(self.scalar("<Q"))
        return _LazyStrings(self.path, self.buffer, start, count)

    def _code(self, kind: int) -> str:
        if kind not in _SCALARS:
            raise CheckpointError(f"{self.path}: corrupt GGUF metadata (value type {kind} at byte {self.pos})")
        return _SCALARS[kind]


class _LazyStrings:
    """A long string array of the metadata (a vocabulary: 49k tokens are ~4 MiB of Python strings), left in
    the file until GGUFFile.get asks for it."""

    def __init__(self, path: Path, buffer: mmap.mmap, start: int, count: int):
        self.path, self.buffer, self.start, self.count = path, buffer, start, count

    def load(self) -> list[str]:
        cursor = _Cursor(self.path, self.buffer)
        cursor.pos = self.start
        return [cursor.string() for _ in range(self.count)]


_LAZY_STRINGS = 4096  # string arrays longer than this are decoded on first use
_STRING, _ARRAY = 8, 9
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_FLOAT_VIEWS = {"F32": np.float32, "F16": np.float16}


def read_gguf(path: str | os.PathLike) -> GGUFFile:
    """Parse `path` (metadata and tensor table; tensor data stays memory-mapped). The last few parses are
    kept: loading the config, the model and the tokenizer of one file parses it once."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file {str(path)!r} does not exist")
    stat = path.stat()
    return _read_cached(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _read_cached(path: Path, size: int, mtime_ns: int) -> GGUFFile:
    """GGUF v2/v3, read directly: the gguf package's GGUFReader builds numpy objects per metadata item
    and, on a 49k-token vocabulary, raised peak memory by ~100 MiB; this parse keeps only the values.
    The package still supplies ggml's type table."""
    gguf = _gguf_package()
    with open(path, "rb") as handle:
        if size < 4 or handle.read(4) != GGUF_MAGIC:
            handle.seek(0)
            raise CheckpointError(f"{path}: not a GGUF file (starts with {handle.read(4)!r}, "
                                  f"expected {GGUF_MAGIC!r})")
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    cursor = _Cursor(path, mapping)
    cursor.take(4)
    version = cursor.scalar("<I")
    if version not in (2, 3):
        raise CheckpointError(f"{path}: unsupported GGUF version {version} (formers reads versions 2 and 3)")
    tensor_count, kv_count = cursor.scalar("<Q"), cursor.scalar("<Q")
    metadata = {}
    for _ in range(kv_count):
        key = cursor.string()
        metadata[key] = cursor.value(cursor.scalar("<I"))
    table = []
    for _ in range(tensor_count):
        name = cursor.string()
        dims = [cursor.scalar("<Q") for _ in range(cursor.scalar("<I"))]
        kind, offset = cursor.scalar("<I"), cursor.scalar("<Q")
        try:
            type_name = gguf.GGMLQuantizationType(kind).name
        except ValueError:
            raise CheckpointError(f"{path}: tensor {name!r} has an unknown ggml type ({kind}); the file needs a "
                                  "newer gguf package or is corrupt") from None
        table.append((name, type_name, tuple(reversed(dims)), offset))
    alignment = int(metadata.get("general.alignment", 32))
    data_start = cursor.pos + (-cursor.pos) % alignment
    tensors = [_tensor(path, mapping, gguf, data_start, *entry) for entry in table]
    parsed = GGUFFile(path, metadata, tensors, mapping)
    parsed.release_range(0, data_start)  # the header's pages (a vocabulary: ~1 MiB) are parsed into `metadata`
    return parsed


def _tensor(path: Path, mapping: mmap.mmap, gguf, data_start: int, name: str, type_name: str,
            shape: tuple[int, ...], offset: int) -> GGUFTensor:
    block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name]]
    count = int(np.prod(shape))
    nbytes = count * type_size // block
    start = data_start + offset
    if start + nbytes > len(mapping):
        raise CheckpointError(f"{path}: tensor {name!r} is truncated ({max(0, len(mapping) - start)} of "
                              f"{nbytes} bytes present)")
    raw = np.frombuffer(mapping, dtype=np.uint8, count=nbytes, offset=start)
    if type_name in _FLOAT_VIEWS:
        data = raw.view(_FLOAT_VIEWS[type_name]).reshape(shape)
    else:
        data = raw.reshape(*shape[:-1], -1) if shape else raw
    return GGUFTensor(name, type_name, shape, data, start)
