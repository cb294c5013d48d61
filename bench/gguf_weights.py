"""The bench checkpoint written as GGUF files (F32, BF16, Q8_0, Q4_0) with the writer formers' tests use
(tests/gguf/convert.py, the `gguf` package's GGUFWriter), so llama.cpp and formers read the same weights.

The random-weight checkpoint has no tokenizer; llama.cpp needs one in the file, so a synthetic byte-level
BPE vocabulary of the model's size is written beside it (the bench feeds token ids, never text).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QTYPES = {"float32": "F32", "bfloat16": "BF16", "int8": "Q8_0", "int4": "Q4_0"}


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2's table)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def tokenizer_folder(vocab_size: int, folder: Path) -> Path:
    """vocab.json / merges.txt / tokenizer_config.json of `vocab_size` tokens: the 256 byte symbols, one merge,
    filler tokens, and <|endoftext|> last."""
    if (folder / "vocab.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tokens = _byte_symbols() + ["Ġt"]
    tokens += [f"tok{i}" for i in range(vocab_size - len(tokens) - 1)] + ["<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\nĠ t\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "eos_token": "<|endoftext|>",
        "added_tokens_decoder": {str(vocab_size - 1): {"content": "<|endoftext|>", "special": True}}}))
    return folder


def gguf_file(checkpoint: Path, dtype_name: str) -> Path:
    """`checkpoint` as a GGUF file of the type matching `dtype_name` (written once, then reused)."""
    qtype = QTYPES[dtype_name]
    out = checkpoint / f"model-{qtype}.gguf"
    if out.exists():
        return out
    sys.path.insert(0, str(REPO))
    from tests.gguf.convert import convert

    vocab = json.loads((checkpoint / "config.json").read_text())["vocab_size"]
    tokens = tokenizer_folder(vocab, checkpoint / "bpe-tokenizer")
    partial = out.with_suffix(".partial")
    convert(checkpoint, partial, qtype, arch="llama", name=checkpoint.name, tokenizer_folder=tokens)
    partial.rename(out)
    return out
