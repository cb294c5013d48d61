"""Tiny seq2seq checkpoints written by transformers 4.45.2, each beside a tokenizer 4.45.2 builds here:
T5/Flan-T5/mT5 over a trained unigram SentencePiece model (with the 100 sentinels), BART/mBART/NLLB over
the GPT-2 BPE in tests/data, Marian over trained source/target SentencePiece models."""
from __future__ import annotations

import json
from pathlib import Path

from ..models.seq2seq_checks import build_seq2seq_checkpoint
from ..tokenization.tok_corpus import sample_texts
from .doc_runner import GPT2

T5_SHAPE = dict(d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
BART_SHAPE = dict(d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                  encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=64, init_std=0.3)


def train_spm(folder: Path, name: str, vocab_size: int, **ids) -> Path:
    import sentencepiece

    corpus = [t for t in sample_texts() if t.strip()] * 3
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_prefix=str(folder / name),
                                             vocab_size=vocab_size, model_type="unigram", minloglevel=2, **ids)
    return folder / f"{name}.model"


def t5_folder(folder: Path, model_type: str = "t5", **fields) -> Path:
    import transformers

    spm = train_spm(folder, "spiece", 300, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    tokenizer = transformers.T5TokenizerFast(vocab_file=str(spm))
    build_seq2seq_checkpoint(folder, model_type, vocab_size=len(tokenizer), **{**T5_SHAPE, **fields})
    tokenizer.save_pretrained(folder)
    return folder


def bpe_folder(folder: Path, model_type: str, tokenizer_class: str, **fields) -> Path:
    """BART / mBART / M2M100 (NLLB) over the GPT-2 BPE; tokenizer_class names 4.45.2's fast class."""
    import tokenizers
    import transformers

    cls = getattr(transformers, tokenizer_class)
    if tokenizer_class == "BartTokenizerFast":
        tokenizer = cls(vocab_file=str(GPT2 / "vocab.json"), merges_file=str(GPT2 / "merges.txt"))
    else:
        tokenizer = cls(tokenizer_object=tokenizers.Tokenizer.from_file(str(GPT2 / "tokenizer.json")), **fields.pop("tok", {}))
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               bos_token_id=tokenizer.bos_token_id, forced_eos_token_id=tokenizer.eos_token_id)
    build_seq2seq_checkpoint(folder, model_type, vocab_size=len(tokenizer), **{**BART_SHAPE, **ids, **fields})
    tokenizer.save_pretrained(folder)
    return folder


def marian_folder(folder: Path) -> Path:
    import sentencepiece
    import transformers

    spms = [train_spm(folder, name, size) for name, size in (("source", 250), ("target", 220))]
    vocab = {"</s>": 0, "<unk>": 1, ">>fra<<": 2, ">>por<<": 3, ">>esp<<": 4}
    for path in spms:
        model = sentencepiece.SentencePieceProcessor(model_file=str(path))
        for piece in (model.id_to_piece(i) for i in range(model.get_piece_size())):
            if piece not in vocab and piece not in ("<unk>", "<s>", "</s>"):
                vocab[piece] = len(vocab)
    vocab["<pad>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = transformers.MarianTokenizer(str(spms[0]), str(spms[1]), str(folder / "vocab.json"),
                                             source_lang="en", target_lang="roa")
    build_seq2seq_checkpoint(folder, "marian", vocab_size=len(vocab), decoder_vocab_size=len(vocab),
                             pad_token_id=vocab["<pad>"], eos_token_id=0, decoder_start_token_id=vocab["<pad>"],
                             forced_eos_token_id=0, **BART_SHAPE)
    tokenizer.save_pretrained(folder)
    return folder
