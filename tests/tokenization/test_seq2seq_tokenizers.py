"""T5TokenizerFast, BartTokenizerFast, MBartTokenizerFast and MarianTokenizer: formers' classes of those names
give the ids (and texts) of transformers 4.45.2's classes on tokenizers 4.45.2 builds here: T5 from a trained
unigram SentencePiece model, BART from the GPT-2 BPE in tests/data, mBART over that BPE with its language
codes, Marian from trained source/target SentencePiece models and a shared vocab.json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import transformers

import formers
from formers.errors import TokenizerError

from .tok_corpus import sample_texts

GPT2 = Path(__file__).parents[1] / "data" / "tokenizers" / "gpt2"
TEXTS = ["Hello world", " The quick brown fox.", "A third</s> sentence, longer <pad>than the others, to translate!",
         "  spaced   text ", "translate English to German: That is good.", ">>fr<< émigré zß"]


def _train_spm(folder: Path, name: str, vocab_size: int, reverse: bool = False) -> Path:
    import sentencepiece

    corpus = [t for t in sample_texts() if t.strip()] * 3
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(corpus[::-1] if reverse else corpus),
                                             model_prefix=str(folder / name), vocab_size=vocab_size,
                                             model_type="unigram", minloglevel=2,
                                             **({"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1} if name == "spiece"
                                                else {}))
    return folder / f"{name}.model"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    import tokenizers

    root = tmp_path_factory.mktemp("seq2seq_tok")
    out = {name: root / name for name in ("t5", "bart", "mbart", "marian")}
    transformers.T5TokenizerFast(vocab_file=str(_train_spm(root, "spiece", 300))).save_pretrained(out["t5"])
    transformers.BartTokenizerFast(vocab_file=str(GPT2 / "vocab.json"), merges_file=str(GPT2 / "merges.txt")
                                   ).save_pretrained(out["bart"])
    backend = tokenizers.Tokenizer.from_file(str(GPT2 / "tokenizer.json"))
    transformers.MBartTokenizerFast(tokenizer_object=backend, src_lang="en_XX", tgt_lang="ro_RO"
                                    ).save_pretrained(out["mbart"])
    spms = {name: _train_spm(root, name, size, reverse=name == "target") for name, size in (("source", 250),
                                                                                            ("target", 220))}
    vocab = {"</s>": 0, "<unk>": 1, ">>fr<<": 2, ">>de<<": 3}
    import sentencepiece
    for path in spms.values():
        model = sentencepiece.SentencePieceProcessor(model_file=str(path))
        for piece in (model.id_to_piece(i) for i in range(model.get_piece_size())):
            if piece not in vocab and piece not in ("<unk>", "<s>", "</s>") and len(vocab) < 300:
                vocab[piece] = len(vocab)  # capped: some target pieces stay out of the vocab (-> <unk>)
    vocab["<pad>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab))
    transformers.MarianTokenizer(str(spms["source"]), str(spms["target"]), str(root / "vocab.json"),
                                 source_lang="en", target_lang="fr").save_pretrained(out["marian"])
    return out


@pytest.mark.parametrize(("family", "name"), [("t5", "T5TokenizerFast"), ("bart", "BartTokenizerFast"),
                                              ("mbart", "MBartTokenizerFast"), ("marian", "MarianTokenizer")])
def test_ids_and_texts_equal_oracle(folders, family, name):
    theirs = transformers.AutoTokenizer.from_pretrained(folders[family])
    ours = formers.AutoTokenizer.from_pretrained(folders[family])
    named = getattr(formers, name).from_pretrained(folders[family])
    assert type(theirs).__name__ == type(ours).__name__ == type(named).__name__ == name
    assert ours(TEXTS).input_ids == theirs(TEXTS).input_ids == named(TEXTS).input_ids
    for kwargs in ({"padding": True, "return_tensors": "pt"}, {"truncation": True, "max_length": 7}):
        expected, got = theirs(TEXTS, **kwargs), ours(TEXTS, **kwargs)
        assert sorted(got) == sorted(expected)
        assert all(str(got[key].tolist() if hasattr(got[key], "tolist") else got[key]) ==
                   str(expected[key].tolist() if hasattr(expected[key], "tolist") else expected[key]) for key in got)
    both = {"text": TEXTS[:2], "text_target": TEXTS[2:4]}
    assert dict(ours(**both)) == dict(theirs(**both))
    ids = theirs(TEXTS).input_ids
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(ids, skip_special_tokens=skip)
    assert ours.pad_token_id == theirs.pad_token_id and ours.eos_token_id == theirs.eos_token_id


def test_mbart_languages_equal_oracle(folders):
    theirs = transformers.MBartTokenizerFast.from_pretrained(folders["mbart"])
    ours = formers.MBartTokenizerFast.from_pretrained(folders["mbart"])
    assert ours.src_lang == theirs.src_lang == "en_XX" and ours.tgt_lang == theirs.tgt_lang == "ro_RO"
    for lang in ("de_DE", "zh_CN"):
        theirs.src_lang, ours.src_lang = lang, lang
        assert ours(TEXTS).input_ids == theirs(TEXTS).input_ids
        assert ours.convert_ids_to_tokens(ours(TEXTS[0]).input_ids)[-2:] == ["</s>", lang]  # code last (mBART)


def test_saved_folders_load_in_oracle(folders, tmp_path):
    for family in ("t5", "bart", "mbart", "marian"):
        formers.AutoTokenizer.from_pretrained(folders[family]).save_pretrained(tmp_path / family)
        again = transformers.AutoTokenizer.from_pretrained(tmp_path / family)
        assert again(TEXTS).input_ids == transformers.AutoTokenizer.from_pretrained(folders[family])(TEXTS).input_ids


def test_marian_without_sentencepiece_says_so(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # as if the package were not installed
    with pytest.raises(TokenizerError, match="sentencepiece"):
        formers.MarianTokenizer.from_pretrained(folders["marian"])


def test_marian_translation_pipeline_equals_oracle(folders, tmp_path):
    """A tiny Marian model with the MarianTokenizer: the translation pipeline's records equal 4.45.2's."""
    from tests.models.seq2seq_checks import build_seq2seq_checkpoint

    vocab = json.loads((folders["marian"] / "vocab.json").read_text())
    build_seq2seq_checkpoint(tmp_path, "marian", vocab_size=len(vocab), decoder_vocab_size=len(vocab),
                             pad_token_id=vocab["<pad>"], eos_token_id=0, decoder_start_token_id=vocab["<pad>"],
                             forced_eos_token_id=0, d_model=16, encoder_layers=1, decoder_layers=1,
                             encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=24,
                             decoder_ffn_dim=24, max_position_embeddings=64, init_std=0.3)
    transformers.AutoTokenizer.from_pretrained(folders["marian"]).save_pretrained(tmp_path)
    for kwargs in ({}, {"num_beams": 2, "max_new_tokens": 6}):
        expected = transformers.pipeline("translation", model=str(tmp_path))(TEXTS[:2], **kwargs)
        got = formers.pipeline("translation", model=str(tmp_path))(TEXTS[:2], **kwargs)
        assert got == expected and expected[0]["translation_text"]
