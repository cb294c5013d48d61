"""Tiny SentencePiece models trained in the test (no licensed files): a Gemma-style and a Llama-style one."""
from __future__ import annotations

import json
from pathlib import Path

from .tok_corpus import sample_texts

_STORY = "Once upon a time there was a little girl. She liked to play in the park with her dog."
# Tabs are left out: a trained "\t" piece would collide with Gemma's converter, which renames <0x09> to "\t".
_COMMON = dict(vocab_size=640, model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
               remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
               character_coverage=0.995, minloglevel=2)
STYLES = {
    "gemma": dict(add_dummy_prefix=False, pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>",
                  eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>"),
    "llama": dict(add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1),
}


def train_folder(folder: Path, style: str, tokenizer_class: str, **config) -> Path:
    """Train a `style` model into folder/tokenizer.model and write a tokenizer_config.json naming the class."""
    import sentencepiece

    corpus = [t.replace("\t", " ") for t in sample_texts() if t.strip()] * 3 + [_STORY] * 50
    folder.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_prefix=str(folder / "spm"),
                                             **_COMMON, **STYLES[style])
    (folder / "spm.model").rename(folder / "tokenizer.model")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class, **config}))
    return folder
