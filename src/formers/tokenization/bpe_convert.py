"""Build a byte-level BPE `tokenizers.Tokenizer` from GPT-2 style `vocab.json` + `merges.txt` (no
tokenizer.json present), as transformers 4.45's converters do: BPE without unk or fusing, a ByteLevel decoder
and a ByteLevel post-processor (offsets kept). `style="gpt2"` pre-tokenizes with ByteLevel's own regex and
`add_prefix_space`; `style="qwen2"` normalizes to NFC and splits with Qwen2's regex first.
"""
from __future__ import annotations

import json
import os

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

from ..errors import TokenizerError

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")


def read_bpe_files(vocab_file: str | os.PathLike, merges_file: str | os.PathLike) -> tuple[dict, list]:
    """(token -> id, [(left, right), ...]) from vocab.json and merges.txt (first line is a '#version' header)."""
    try:
        with open(vocab_file, encoding="utf-8") as handle:
            vocab = json.load(handle)
        with open(merges_file, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except (OSError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"cannot read BPE files {str(vocab_file)!r} / {str(merges_file)!r}: {exc}") from exc
    if not isinstance(vocab, dict):
        raise TokenizerError(f"{str(vocab_file)!r} must hold a JSON object of token -> id")
    merges = []
    for number, line in enumerate(lines[1:-1] if lines and lines[0].startswith("#version") else lines[:-1], 2):
        parts = line.split()
        if len(parts) != 2:
            raise TokenizerError(f"{str(merges_file)!r} line {number}: expected two tokens, got {line!r}")
        merges.append((parts[0], parts[1]))
    return vocab, merges


def convert_bpe_files(vocab_file: str | os.PathLike, merges_file: str | os.PathLike, *,
                      add_prefix_space: bool | None = False, style: str = "gpt2") -> Tokenizer:
    """The byte-level BPE pipeline of `style` ("gpt2" or "qwen2") over the given vocabulary and merges."""
    if style not in ("gpt2", "qwen2"):
        raise TokenizerError(f"{str(vocab_file)!r}: unknown BPE conversion style {style!r}; expected gpt2 or qwen2")
    vocab, merges = read_bpe_files(vocab_file, merges_file)
    tokenizer = Tokenizer(BPE(vocab, merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
                              fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=bool(add_prefix_space), use_regex=style == "gpt2")
    if style == "qwen2":
        tokenizer.normalizer = normalizers.NFC()
        split = pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False)
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer
