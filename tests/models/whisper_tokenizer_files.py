"""A small Whisper tokenizer folder written by transformers 4.45.2 (the oracle) for tests.

Byte-level base vocabulary + a few merges, then Whisper's special tokens in the hub's order
(<|endoftext|>, <|startoftranscript|>, 100 languages, tasks, <|notimestamps|>) and 1501 timestamp tokens.
"""
from __future__ import annotations

import json
from pathlib import Path

import transformers
from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode
from transformers.models.whisper.tokenization_whisper import LANGUAGES

MERGES = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ w", "r e", "Ġ s", "o r", "Ġ b", "i s", "t h", "Ġw h"]


def write_whisper_tokenizer(folder: Path, fast_json: bool = False) -> Path:
    """Write vocab.json/merges.txt/added tokens (and tokenizer.json when `fast_json`) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {char: index for index, char in enumerate(bytes_to_unicode().values())}
    for merge in MERGES:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{code}|>" for code in LANGUAGES],
                "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
                "<|notimestamps|>"]
    slow = transformers.WhisperTokenizer(folder / "vocab.json", folder / "merges.txt",
                                         additional_special_tokens=specials)
    slow.add_tokens(["<|%.2f|>" % (i * 0.02) for i in range(1501)])
    slow.save_pretrained(folder)
    if fast_json:
        transformers.WhisperTokenizerFast.from_pretrained(folder).save_pretrained(folder)
    return folder
