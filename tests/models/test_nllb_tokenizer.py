"""NllbTokenizerFast (non-legacy and legacy formats, src_lang/tgt_lang, text_target) and the translation
pipeline with src_lang/tgt_lang on a tiny M2M100 checkpoint: ids and records equal 4.45.2's. The tokenizer
is built by 4.45.2's NllbTokenizerFast over the GPT-2 BPE in tests/data (its language codes become added
special tokens)."""
from __future__ import annotations

from pathlib import Path

import pytest

import formers
from tests.models.seq2seq_checks import build_seq2seq_checkpoint

GPT2_JSON = Path(__file__).parents[1] / "data" / "tokenizers" / "gpt2" / "tokenizer.json"
TEXTS = ["Hello world", "The quick brown fox.", "A third, longer sentence to translate."]


def _tokenizer_folder(folder: Path, **kwargs) -> Path:
    import tokenizers
    import transformers

    backend = tokenizers.Tokenizer.from_file(str(GPT2_JSON))
    transformers.NllbTokenizerFast(tokenizer_object=backend, src_lang="eng_Latn", **kwargs).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _tokenizer_folder(tmp_path_factory.mktemp("nllb_tok"), tgt_lang="fra_Latn")


@pytest.mark.parametrize("legacy", [False, True])
def test_ids_equal_4_45(tmp_path, legacy):
    import transformers

    path = _tokenizer_folder(tmp_path, tgt_lang="fra_Latn", legacy_behaviour=legacy)
    theirs, ours = transformers.AutoTokenizer.from_pretrained(path), formers.AutoTokenizer.from_pretrained(path)
    assert type(ours).__name__ == "NllbTokenizerFast"
    assert ours(TEXTS).input_ids == theirs(TEXTS).input_ids
    for lang in ("deu_Latn", "zho_Hans"):
        theirs.src_lang, ours.src_lang = lang, lang
        assert ours(TEXTS[0]).input_ids == theirs(TEXTS[0]).input_ids
    both = {"text": TEXTS[1], "text_target": TEXTS[2]}
    assert dict(ours(**both)) == dict(theirs(**both))
    ids = theirs(TEXTS[2]).input_ids
    assert ours.decode(ids, skip_special_tokens=True) == theirs.decode(ids, skip_special_tokens=True)


def test_save_round_trip_keeps_languages(folder, tmp_path):
    import transformers

    ours = formers.AutoTokenizer.from_pretrained(folder)
    ours.src_lang = "deu_Latn"
    ours.save_pretrained(tmp_path)
    again = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert again.src_lang == "deu_Latn" and again.tgt_lang == "fra_Latn"
    assert again(TEXTS[0]).input_ids == ours(TEXTS[0]).input_ids


def test_unknown_language_is_refused_by_name(folder):
    with pytest.raises(formers.errors.TokenizerError, match="xx_Fake"):
        formers.AutoTokenizer.from_pretrained(folder).src_lang = "xx_Fake"


def test_translation_pipeline_with_languages_equals_4_45(folder, tmp_path):
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(folder)
    build_seq2seq_checkpoint(tmp_path, "m2m_100", vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
                             encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=24,
                             decoder_ffn_dim=24, init_std=0.3,
                             max_position_embeddings=50400,  # positions count from the pad id (50260 here)
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                             decoder_start_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    tok.save_pretrained(tmp_path)
    theirs = transformers.pipeline("translation", model=str(tmp_path))
    ours = formers.pipeline("translation", model=str(tmp_path))
    kwargs = {"src_lang": "deu_Latn", "tgt_lang": "spa_Latn", "max_new_tokens": 6}
    expected, got = theirs(TEXTS, **kwargs), ours(TEXTS, **kwargs)
    assert got == expected
    spa = tok.convert_tokens_to_ids("spa_Latn")
    (record,) = ours(TEXTS[0], return_tensors=True, **kwargs)
    assert record["translation_token_ids"][1].item() == spa  # the target code is forced after the start token
    with pytest.raises(formers.errors.TokenizerError, match="src_lang"):
        ours(TEXTS[0])
