"""Read a SentencePiece `tokenizer.model` (a serialized `ModelProto`) without the protobuf package.

Only the fields needed to rebuild the tokenizer are decoded: the pieces (text, score, type), the trainer
spec (algorithm, special ids/pieces, byte fallback) and the normalizer spec. Field numbers are those of
sentencepiece's `sentencepiece_model.proto`; unknown fields are skipped, so newer files still load.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TokenizerError

# SentencePiece.Type values.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.ModelType values.
UNIGRAM, BPE, WORD, CHAR = 1, 2, 3, 4

# Protobuf wire types.
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


@dataclass
class Piece:
    piece: str
    score: float = 0.0
    type: int = NORMAL


@dataclass
class TrainerSpec:
    model_type: int = UNIGRAM
    vocab_size: int = 8000
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    unk_piece: str = "<unk>"
    bos_piece: str = "<s>"
    eos_piece: str = "</s>"
    pad_piece: str = "<pad>"
    split_digits: bool = False
    treat_whitespace_as_suffix: bool = False
    control_symbols: list[str] = field(default_factory=list)
    user_defined_symbols: list[str] = field(default_factory=list)


@dataclass
class NormalizerSpec:
    name: str = ""
    precompiled_charsmap: bytes = b""
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    escape_whitespaces: bool = True


@dataclass
class SentencePieceModel:
    pieces: list[Piece] = field(default_factory=list)
    trainer_spec: TrainerSpec = field(default_factory=TrainerSpec)
    normalizer_spec: NormalizerSpec = field(default_factory=NormalizerSpec)


# field number -> (attribute name, decoder kind) for the scalar fields we keep.
_TRAINER_FIELDS = {
    3: ("model_type", "int"), 4: ("vocab_size", "int"), 35: ("byte_fallback", "bool"),
    40: ("unk_id", "int32"), 41: ("bos_id", "int32"), 42: ("eos_id", "int32"), 43: ("pad_id", "int32"),
    45: ("unk_piece", "str"), 46: ("bos_piece", "str"), 47: ("eos_piece", "str"), 48: ("pad_piece", "str"),
    25: ("split_digits", "bool"), 24: ("treat_whitespace_as_suffix", "bool"),
    30: ("control_symbols", "str[]"), 31: ("user_defined_symbols", "str[]"),
}
_NORMALIZER_FIELDS = {
    1: ("name", "str"), 2: ("precompiled_charsmap", "bytes"), 3: ("add_dummy_prefix", "bool"),
    4: ("remove_extra_whitespaces", "bool"), 5: ("escape_whitespaces", "bool"),
}
_PIECE_FIELDS = {1: ("piece", "str"), 2: ("score", "float"), 3: ("type", "int")}


class _Reader:
    """Iterates (field number, wire type, value) over one protobuf message held in `data`."""

    def __init__(self, data: bytes, where: str):
        self.data, self.pos, self.where = data, 0, where

    def _varint(self) -> int:
        result = shift = 0
        while True:
            if self.pos >= len(self.data):
                raise TokenizerError(f"{self.where}: truncated varint; the SentencePiece model file is corrupt")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise TokenizerError(f"{self.where}: varint longer than 10 bytes; not a SentencePiece model")

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise TokenizerError(f"{self.where}: field runs past the end of the data; the file is corrupt")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def fields(self):
        while self.pos < len(self.data):
            key = self._varint()
            number, wire = key >> 3, key & 7
            if wire == _VARINT:
                yield number, wire, self._varint()
            elif wire == _FIXED64:
                yield number, wire, self._take(8)
            elif wire == _LEN:
                yield number, wire, self._take(self._varint())
            elif wire == _FIXED32:
                yield number, wire, self._take(4)
            else:
                raise TokenizerError(f"{self.where}: unsupported protobuf wire type {wire} (field {number})")


def _decode_value(kind: str, wire: int, value, where: str):
    expected = _LEN if kind in ("str", "str[]", "bytes") else (_FIXED32 if kind == "float" else _VARINT)
    if wire != expected:
        raise TokenizerError(f"{where}: wire type {wire} where {kind!r} was expected; not a SentencePiece model")
    if kind in ("str", "str[]"):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TokenizerError(f"{where}: string field is not valid UTF-8") from exc
    if kind == "bytes":
        return bytes(value)
    if kind == "float":
        return struct.unpack("<f", value)[0]
    if kind == "bool":
        return bool(value)
    if kind == "int32":  # negative int32 values are sign-extended to 64 bits on the wire
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value & 0x80000000 else value
    return value


def _fill(target, data: bytes, table: dict, where: str):
    for number, wire, value in _Reader(data, where).fields():
        if number not in table:
            continue
        name, kind = table[number]
        decoded = _decode_value(kind, wire, value, f"{where}.{name}")
        if kind == "str[]":
            getattr(target, name).append(decoded)
        else:
            setattr(target, name, decoded)
    return target


def parse_sentencepiece_model(data: bytes, where: str = "tokenizer.model") -> SentencePieceModel:
    """Decode the bytes of a SentencePiece ModelProto; errors name `where` (usually the file path)."""
    model = SentencePieceModel()
    for number, wire, value in _Reader(data, where).fields():
        if wire != _LEN:
            continue
        if number == 1:
            model.pieces.append(_fill(Piece(piece=""), value, _PIECE_FIELDS, f"{where}: pieces[{len(model.pieces)}]"))
        elif number == 2:
            _fill(model.trainer_spec, value, _TRAINER_FIELDS, f"{where}: trainer_spec")
        elif number == 3:
            _fill(model.normalizer_spec, value, _NORMALIZER_FIELDS, f"{where}: normalizer_spec")
    if not model.pieces:
        raise TokenizerError(f"{where}: no vocabulary pieces found; is this a SentencePiece tokenizer.model file?")
    return model


def load_sentencepiece_model(path: str | os.PathLike) -> SentencePieceModel:
    """Read and decode a `tokenizer.model` file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerError(f"cannot read SentencePiece model {str(path)!r}: {exc}") from exc
    return parse_sentencepiece_model(data, where=str(path))
