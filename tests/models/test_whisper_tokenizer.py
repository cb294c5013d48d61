"""WhisperTokenizer[Fast] and WhisperProcessor: ids, prompts and timestamp decoding equal 4.45.2's."""
from __future__ import annotations

import numpy as np
import pytest
import transformers

from formers import AutoProcessor, AutoTokenizer
from formers.errors import AudioInputError, TokenizerError
from formers.models.whisper import (
    WhisperProcessor,
    WhisperTokenizer,
    WhisperTokenizerFast,
)
from formers.models.whisper.languages import LANGUAGES, TO_LANGUAGE_CODE
from tests.models.whisper_tokenizer_files import write_whisper_tokenizer

TEXTS = ["the cat is there", " the whisper of the wind, in the sea", "<|en|> hi", "Ünïcødé ☃ and 漢字"]
PROMPTS = [{}, {"language": "en", "task": "transcribe"},
           {"language": "French", "task": "translate", "predict_timestamps": True}]
CLASSES = [(transformers.WhisperTokenizer, WhisperTokenizer),
           (transformers.WhisperTokenizerFast, WhisperTokenizerFast)]


@pytest.fixture(scope="module", params=[False, True], ids=["slow-files", "tokenizer.json"])
def folder(request, tmp_path_factory):
    return write_whisper_tokenizer(tmp_path_factory.mktemp("whisper_tok"), fast_json=request.param)


def test_language_tables_equal_oracle():
    from transformers.models.whisper import tokenization_whisper as oracle
    assert list(LANGUAGES.items()) == list(oracle.LANGUAGES.items())
    assert TO_LANGUAGE_CODE == oracle.TO_LANGUAGE_CODE


@pytest.mark.parametrize("oracle_cls,ours_cls", CLASSES, ids=["slow", "fast"])
@pytest.mark.parametrize("prompt", PROMPTS, ids=["plain", "en-transcribe", "fr-translate-ts"])
def test_ids_equal_oracle(folder, oracle_cls, ours_cls, prompt):
    theirs, ours = oracle_cls.from_pretrained(folder, **prompt), ours_cls.from_pretrained(folder, **prompt)
    assert len(ours) == len(theirs) and ours.all_special_ids == theirs.all_special_ids
    for text in TEXTS:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"], text
        assert ours(text, add_special_tokens=False)["input_ids"] == theirs(text, add_special_tokens=False)["input_ids"]
    assert ours.timestamp_ids() == theirs.timestamp_ids()
    assert ours.prefix_tokens == theirs.prefix_tokens
    for kwargs in ({"language": "de", "task": "transcribe"}, {"task": "translate", "no_timestamps": False}):
        assert ours.get_decoder_prompt_ids(**kwargs) == theirs.get_decoder_prompt_ids(**kwargs)
        assert ours(TEXTS[0])["input_ids"] == theirs(TEXTS[0])["input_ids"]  # the prompt changed in both
    assert np.array_equal(ours.get_prompt_ids("the sea"), theirs.get_prompt_ids("the sea"))


def _timestamped_ids(tok) -> list[int]:
    """<|startofprev|> prompt, then three segments; the third restarts from a lower time (a new 30 s window)."""
    begin = tok.convert_tokens_to_ids("<|notimestamps|>") + 1
    words = lambda text: tok.encode(text, add_special_tokens=False)
    return ([tok.convert_tokens_to_ids("<|startofprev|>"), *words(" before"), *tok.prefix_tokens[:1], begin,
             *words(" the cat"), begin + 50, begin + 50, *words(" is there"), begin + 120, begin + 10,
             *words(" or"), begin + 30, tok.eos_token_id])


@pytest.mark.parametrize("oracle_cls,ours_cls", CLASSES, ids=["slow", "fast"])
def test_timestamp_decoding_equals_oracle(folder, oracle_cls, ours_cls):
    theirs, ours = oracle_cls.from_pretrained(folder), ours_cls.from_pretrained(folder)
    ids = _timestamped_ids(theirs)
    assert ids == _timestamped_ids(ours)
    for kwargs in ({}, {"skip_special_tokens": True}, {"output_offsets": True},
                   {"decode_with_timestamps": True}, {"output_offsets": True, "time_precision": 0.04},
                   {"decode_with_timestamps": True, "skip_special_tokens": True, "output_offsets": True}):
        assert ours.decode(ids, **kwargs) == theirs.decode(ids, **kwargs), kwargs
    assert ours.decode(ids, output_offsets=True)["offsets"][2]["timestamp"] == pytest.approx((2.6, 3.0))
    plain = ours.encode("the cat")
    assert ours.decode(plain, output_offsets=True) == theirs.decode(plain, output_offsets=True)
    assert ours.batch_decode([ids, plain], skip_special_tokens=True) == \
        theirs.batch_decode([ids, plain], skip_special_tokens=True)


def test_auto_classes_and_processor(folder, tmp_path):
    assert type(AutoTokenizer.from_pretrained(folder)) is WhisperTokenizerFast
    assert type(AutoTokenizer.from_pretrained(folder, use_fast=False)) is WhisperTokenizer
    extractor = transformers.WhisperFeatureExtractor()
    extractor._set_processor_class("WhisperProcessor")  # as a hub checkpoint's preprocessor_config.json
    extractor.save_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    oracle = transformers.WhisperProcessor.from_pretrained(folder)
    assert isinstance(processor, WhisperProcessor)
    audio = np.sin(np.arange(16000) / 7.0).astype(np.float32)
    ours = processor(audio, sampling_rate=16000, text="the cat")
    theirs = oracle(audio=audio, sampling_rate=16000, text="the cat")
    assert np.abs(ours["input_features"] - theirs["input_features"]).max() <= 1e-5
    assert ours["labels"] == theirs["labels"]
    assert processor.get_decoder_prompt_ids(language="en") == oracle.get_decoder_prompt_ids(language="en")
    processor.save_pretrained(tmp_path)
    again = transformers.AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(again, transformers.WhisperProcessor)
    fresh = transformers.AutoTokenizer.from_pretrained(folder)
    assert again.tokenizer("the cat", add_special_tokens=False)["input_ids"] == \
        fresh("the cat", add_special_tokens=False)["input_ids"]
    with pytest.raises(AudioInputError, match="22050"):
        processor(audio, sampling_rate=22050)


def test_bad_arguments_raise_formers_errors(folder):
    tok = WhisperTokenizerFast.from_pretrained(folder)
    with pytest.raises(TokenizerError, match="klingon"):
        tok.set_prefix_tokens(language="klingon")
    with pytest.raises(TokenizerError, match="task='summarise'"):
        _ = WhisperTokenizerFast.from_pretrained(folder, task="summarise").prefix_tokens
    with pytest.raises(TokenizerError, match="special token"):
        tok.get_prompt_ids("say <|en|>")
