"""M2M100Tokenizer, MBart50TokenizerFast, the MT5 aliases and the slow names T5Tokenizer / BartTokenizer /
MBartTokenizer: ids, decoded text and special tokens equal transformers 4.45.2's on the same files (written
here by 4.45.2), AutoTokenizer picks the same class names, and the 4.45 model_doc translation examples of
mBART-50 (mbart.md) and M2M100 (m2m_100.md) print what 4.45.2 prints on tiny local checkpoints."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import formers
from tests.docs_examples import seq2seq_folders as folders
from tests.docs_examples.doc_runner import run_both
from tests.models.seq2seq_checks import build_seq2seq_checkpoint
from tests.tokenization.tok_corpus import sample_texts

pytest.importorskip("sentencepiece")

TEXTS = [t for t in sample_texts() if t.strip()][:30] + [
    "The <extra_id_0> walks in <extra_id_1> park", "Hello  world </s> x", " lead space", "tab\there",
    "<unk> and <pad>", "x <mask> y", "__fr__ Bonjour le monde", "Bonjour __de__ Welt", "Ünïcödé 生活就像一盒巧克力。"]


def _m2m100_folder(folder: Path, special_languages: bool = False, **tok) -> Path:
    """A fairseq-style vocab.json (<s> <pad> </s> <unk> first) over a trained SentencePiece model, saved by
    4.45.2's M2M100Tokenizer, beside a tiny M2M100 checkpoint whose vocabulary also holds the 100 language
    ids and 8 made-up words (as facebook/m2m100_418M's). `special_languages` lists the language tokens as
    additional special tokens, as the hub checkpoints' tokenizer_config.json does."""
    import sentencepiece
    import transformers
    from transformers.models.m2m_100.tokenization_m2m_100 import FAIRSEQ_LANGUAGE_CODES

    if special_languages:
        tok["additional_special_tokens"] = [f"__{code}__" for code in FAIRSEQ_LANGUAGE_CODES["m2m100"]]

    spm = folders.train_spm(folder, "spm", 260)
    model = sentencepiece.SentencePieceProcessor(model_file=str(spm))
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for piece in (model.id_to_piece(i) for i in range(model.get_piece_size())):
        vocab.setdefault(piece, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = transformers.M2M100Tokenizer(str(folder / "vocab.json"), str(spm), **tok)
    build_seq2seq_checkpoint(folder, "m2m_100", vocab_size=len(vocab) + 108, pad_token_id=1, eos_token_id=2,
                             bos_token_id=0, decoder_start_token_id=2, **folders.BART_SHAPE)
    (folder / "vocab.json").unlink()
    spm.unlink()
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=[False, True], ids=["languages_plain", "languages_special"])
def m2m(tmp_path_factory, request) -> Path:
    return _m2m100_folder(tmp_path_factory.mktemp("m2m100"), request.param, src_lang="en", tgt_lang="fr")


@pytest.fixture(scope="module")
def m2m_hub(tmp_path_factory) -> Path:
    """Language tokens special, as in facebook/m2m100_418M's tokenizer_config.json."""
    return _m2m100_folder(tmp_path_factory.mktemp("m2m100_hub"), True)


@pytest.fixture(scope="module")
def mbart50(tmp_path_factory) -> Path:
    """MBart50TokenizerFast has no bos token: generation starts from `</s>` (decoder_start_token_id), as in
    facebook/mbart-large-50's config. 256 positions: byte-level BPE spends many tokens on Hindi/Arabic."""
    folder = folders.bpe_folder(tmp_path_factory.mktemp("mbart50"), "mbart", "MBart50TokenizerFast",
                                tok=dict(src_lang="en_XX", tgt_lang="ro_RO"), max_position_embeddings=256)
    for name in ("config.json", "generation_config.json"):
        config = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps({**config, "decoder_start_token_id": config["eos_token_id"]}))
    return folder


def _same_encodings(ours, theirs, texts=TEXTS) -> None:
    assert ours(texts).input_ids == theirs(texts).input_ids
    batch = {"padding": True, "truncation": True, "max_length": 9}
    assert dict(ours(texts[:4], **batch)) == dict(theirs(texts[:4], **batch))
    for ids in theirs(texts).input_ids:
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)


# -- M2M100Tokenizer ---------------------------------------------------------------------------------------------
def test_m2m100_ids_languages_and_decoding_equal_4_45(m2m):
    import transformers

    theirs, ours = transformers.M2M100Tokenizer.from_pretrained(m2m), formers.M2M100Tokenizer.from_pretrained(m2m)
    _same_encodings(ours, theirs)
    assert len(ours) == len(theirs) and ours.get_vocab() == theirs.get_vocab()
    assert ours.lang_code_to_id == theirs.lang_code_to_id
    assert ours.all_special_tokens == theirs.all_special_tokens and ours.all_special_ids == theirs.all_special_ids
    assert [ours.get_lang_id(c) for c in ("fr", "hi", "zh")] == [theirs.get_lang_id(c) for c in ("fr", "hi", "zh")]
    for lang in ("de", "hi"):
        theirs.src_lang, ours.src_lang = lang, lang
        assert ours(TEXTS[:3]).input_ids == theirs(TEXTS[:3]).input_ids
    both = {"text": TEXTS[:2], "text_target": TEXTS[2:4]}
    assert dict(ours(**both)) == dict(theirs(**both))
    assert ours(text_target=TEXTS[5]).input_ids == theirs(text_target=TEXTS[5]).input_ids
    assert ours(TEXTS[0]).input_ids[0] == ours.get_lang_id("hi")  # the source code is back after the targets
    assert ours.decode(theirs(TEXTS[1]).input_ids, clean_up_tokenization_spaces=True) == \
        theirs.decode(theirs(TEXTS[1]).input_ids, clean_up_tokenization_spaces=True)


def test_m2m100_auto_and_save_round_trip(m2m, tmp_path):
    import transformers

    ours = formers.AutoTokenizer.from_pretrained(m2m)
    assert type(ours).__name__ == type(transformers.AutoTokenizer.from_pretrained(m2m)).__name__ == "M2M100Tokenizer"
    ours.src_lang = "de"
    ours.save_pretrained(tmp_path)
    again = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert (again.src_lang, again.tgt_lang) == ("de", "fr")
    assert again(TEXTS[:5]).input_ids == ours(TEXTS[:5]).input_ids


def test_m2m100_bad_input_is_named(m2m, monkeypatch):
    tokenizer = formers.M2M100Tokenizer.from_pretrained(m2m)
    with pytest.raises(formers.errors.TokenizerError, match="'xx'"):
        tokenizer.src_lang = "xx"
    with pytest.raises(formers.errors.TokenizerError, match="'xx'"):
        tokenizer.get_lang_id("xx")
    monkeypatch.setitem(sys.modules, "sentencepiece", None)
    with pytest.raises(formers.errors.TokenizerError, match="M2M100Tokenizer needs the `sentencepiece` package"):
        formers.M2M100Tokenizer.from_pretrained(m2m)


def test_m2m100_translation_pipeline_equals_4_45(m2m):
    import transformers

    kwargs = {"src_lang": "de", "tgt_lang": "hi", "max_new_tokens": 5}
    expected = transformers.pipeline("translation", model=str(m2m))(TEXTS[:3], **kwargs)
    assert formers.pipeline("translation", model=str(m2m))(TEXTS[:3], **kwargs) == expected


# -- MBart50TokenizerFast ----------------------------------------------------------------------------------------
def test_mbart50_ids_languages_and_decoding_equal_4_45(mbart50):
    import transformers

    theirs = transformers.MBart50TokenizerFast.from_pretrained(mbart50)
    ours = formers.MBart50TokenizerFast.from_pretrained(mbart50)
    _same_encodings(ours, theirs)
    assert ours.lang_code_to_id == theirs.lang_code_to_id and len(ours.lang_code_to_id) == 52
    assert ours.all_special_tokens == theirs.all_special_tokens
    for lang in ("hi_IN", "sl_SI"):
        theirs.src_lang, ours.src_lang = lang, lang
        assert ours(TEXTS[:3]).input_ids == theirs(TEXTS[:3]).input_ids
        assert ours(TEXTS[0]).input_ids[0] == ours.lang_code_to_id[lang]  # the code first, `</s>` last
    both = {"text": TEXTS[:2], "text_target": TEXTS[2:4]}
    assert dict(ours(**both)) == dict(theirs(**both))
    auto = formers.AutoTokenizer.from_pretrained(mbart50)
    assert type(auto).__name__ == type(transformers.AutoTokenizer.from_pretrained(mbart50)).__name__


# -- slow names and mT5 aliases ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow_folders(tmp_path_factory) -> dict[str, Path]:
    import transformers

    t5 = folders.t5_folder(tmp_path_factory.mktemp("t5"))
    bart = folders.bpe_folder(tmp_path_factory.mktemp("bart"), "bart", "BartTokenizerFast")
    mbart = tmp_path_factory.mktemp("mbart_spm")
    spm = folders.train_spm(mbart, "sentencepiece.bpe", 300)
    # 4.45.2's fast class built from the SentencePiece model saves both it and tokenizer.json
    transformers.MBartTokenizerFast(vocab_file=str(spm), src_lang="en_XX", tgt_lang="ro_RO").save_pretrained(mbart)
    mbart50 = tmp_path_factory.mktemp("mbart50_spm")
    spm = folders.train_spm(mbart50, "sentencepiece.bpe", 300)
    transformers.MBart50TokenizerFast(vocab_file=str(spm), src_lang="hi_IN", tgt_lang="fr_XX").save_pretrained(mbart50)
    return {"T5Tokenizer": t5, "BartTokenizer": bart, "MBartTokenizer": mbart, "MBart50Tokenizer": mbart50}


@pytest.mark.parametrize("name", ["T5Tokenizer", "BartTokenizer", "MBartTokenizer", "MBart50Tokenizer"])
def test_slow_names_equal_4_45_slow_classes(slow_folders, name):
    import transformers

    folder = slow_folders[name]
    theirs, ours = getattr(transformers, name).from_pretrained(folder), getattr(formers, name).from_pretrained(folder)
    _same_encodings(ours, theirs)
    assert ours.is_fast is False and ours.all_special_tokens == theirs.all_special_tokens
    auto = formers.AutoTokenizer.from_pretrained(folder, use_fast=False)
    assert type(auto).__name__ == type(transformers.AutoTokenizer.from_pretrained(folder, use_fast=False)).__name__


def test_auto_without_tokenizer_class_follows_model_type_as_4_45(m2m_hub, tmp_path):
    import transformers

    for name in ("vocab.json", "sentencepiece.bpe.model", "config.json"):
        (tmp_path / name).write_bytes((m2m_hub / name).read_bytes())
    assert type(formers.AutoTokenizer.from_pretrained(tmp_path)).__name__ == \
        type(transformers.AutoTokenizer.from_pretrained(tmp_path)).__name__ == "M2M100Tokenizer"


def test_mt5_names_are_t5_classes_as_in_4_45(slow_folders):
    import transformers

    from formers.models.mt5 import MT5Tokenizer

    for name in ("MT5Tokenizer", "MT5TokenizerFast"):
        assert getattr(formers, name).__name__ == getattr(transformers, name).__name__
    assert MT5Tokenizer is formers.T5Tokenizer
    folder = slow_folders["T5Tokenizer"]
    theirs, ours = transformers.MT5TokenizerFast.from_pretrained(folder), formers.MT5TokenizerFast.from_pretrained(folder)
    assert ours(TEXTS).input_ids == theirs(TEXTS).input_ids


# -- 4.45 model_doc translation examples -------------------------------------------------------------------------
MBART50_TRANSLATION = '''
from transformers import MBartForConditionalGeneration, MBart50TokenizerFast

article_hi = "संयुक्त राष्ट्र के प्रमुख का कहना है कि सीरिया में कोई सैन्य समाधान नहीं है"
article_ar = "الأمين العام للأمم المتحدة يقول إنه لا يوجد حل عسكري في سوريا."

model = MBartForConditionalGeneration.from_pretrained("facebook/mbart-large-50-many-to-many-mmt")
tokenizer = MBart50TokenizerFast.from_pretrained("facebook/mbart-large-50-many-to-many-mmt")

# translate Hindi to French
tokenizer.src_lang = "hi_IN"
encoded_hi = tokenizer(article_hi, return_tensors="pt")
generated_tokens = model.generate(**encoded_hi, forced_bos_token_id=tokenizer.lang_code_to_id["fr_XX"])
print(tokenizer.batch_decode(generated_tokens, skip_special_tokens=True))
print(generated_tokens.tolist())

# translate Arabic to English
tokenizer.src_lang = "ar_AR"
encoded_ar = tokenizer(article_ar, return_tensors="pt")
generated_tokens = model.generate(**encoded_ar, forced_bos_token_id=tokenizer.lang_code_to_id["en_XX"])
print(tokenizer.batch_decode(generated_tokens, skip_special_tokens=True))
print(generated_tokens.tolist())
'''

MBART50_TRAINING = '''
from transformers import MBartForConditionalGeneration, MBart50TokenizerFast

model = MBartForConditionalGeneration.from_pretrained("facebook/mbart-large-50")
tokenizer = MBart50TokenizerFast.from_pretrained("facebook/mbart-large-50", src_lang="en_XX", tgt_lang="ro_RO")

src_text = " UN Chief Says There Is No Military Solution in Syria"
tgt_text = "Şeful ONU declară că nu există o soluţie militară în Siria"

model_inputs = tokenizer(src_text, text_target=tgt_text, return_tensors="pt")
print(round(model(**model_inputs).loss.item(), 5))
print(model_inputs["input_ids"].tolist(), model_inputs["labels"].tolist())
'''

M2M100_TRANSLATION = '''
from transformers import M2M100ForConditionalGeneration, M2M100Tokenizer

hi_text = "जीवन एक चॉकलेट बॉक्स की तरह है।"
chinese_text = "生活就像一盒巧克力。"

model = M2M100ForConditionalGeneration.from_pretrained("facebook/m2m100_418M")
tokenizer = M2M100Tokenizer.from_pretrained("facebook/m2m100_418M")

# translate Hindi to French
tokenizer.src_lang = "hi"
encoded_hi = tokenizer(hi_text, return_tensors="pt")
generated_tokens = model.generate(**encoded_hi, forced_bos_token_id=tokenizer.get_lang_id("fr"))
print(tokenizer.batch_decode(generated_tokens, skip_special_tokens=True))
print(generated_tokens.tolist())

# translate Chinese to English
tokenizer.src_lang = "zh"
encoded_zh = tokenizer(chinese_text, return_tensors="pt")
generated_tokens = model.generate(**encoded_zh, forced_bos_token_id=tokenizer.get_lang_id("en"))
print(tokenizer.batch_decode(generated_tokens, skip_special_tokens=True))
print(generated_tokens.tolist())
'''

M2M100_TRAINING = '''
from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

model = M2M100ForConditionalGeneration.from_pretrained("facebook/m2m100_418M")
tokenizer = M2M100Tokenizer.from_pretrained("facebook/m2m100_418M", src_lang="en", tgt_lang="fr")

src_text = "Life is like a box of chocolates."
tgt_text = "La vie est comme une boîte de chocolat."

model_inputs = tokenizer(src_text, text_target=tgt_text, return_tensors="pt")

loss = model(**model_inputs).loss  # forward pass
print(round(loss.item(), 5))
print(model_inputs["input_ids"].tolist(), model_inputs["labels"].tolist())
'''


@pytest.mark.parametrize("snippet, hub_id, kind", [
    (MBART50_TRANSLATION, "facebook/mbart-large-50-many-to-many-mmt", "mbart50"),
    (MBART50_TRAINING, "facebook/mbart-large-50", "mbart50"),
    (M2M100_TRANSLATION, "facebook/m2m100_418M", "m2m_hub"),
    (M2M100_TRAINING, "facebook/m2m100_418M", "m2m_hub"),
], ids=["mbart50_translation", "mbart50_training", "m2m100_translation", "m2m100_training"])
def test_doc_examples_print_what_4_45_prints(request, snippet, hub_id, kind):
    folder = request.getfixturevalue(kind)
    (theirs, _), (ours, _) = run_both(snippet, {hub_id: folder})
    assert theirs.strip() and ours == theirs
