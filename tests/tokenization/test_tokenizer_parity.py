"""formers' tokenizers against transformers 4.45.2 on the shared real tokenizers (llama2, gpt2, stories260K)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from .conftest import shared_dir
from .tok_corpus import sample_texts

TEXTS = sample_texts()
BATCH = ["Hello world", " a", "The quick brown fox jumps over the lazy dog.", "你好，世界！ 🤗", "", "x\ny"]


def as_lists(encoding) -> dict:
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in dict(encoding).items()}


def same_outcome(call_mine, call_ref):
    """Both calls give the same encoding, or the oracle fails and formers raises TokenizerError."""
    from formers.errors import TokenizerError

    try:
        expected = as_lists(call_ref())
    except Exception:
        with pytest.raises(TokenizerError):
            call_mine()
        return
    assert as_lists(call_mine()) == expected


def test_corpus_is_large_enough():
    assert len(TEXTS) >= 200


def test_readme_llama2_hello_world():
    import transformers

    from formers import AutoTokenizer

    path = shared_dir("llama2")
    ids = AutoTokenizer.from_pretrained(path)(" Hello world")["input_ids"]
    assert ids == [1, 29871, 15043, 3186]
    assert ids == transformers.AutoTokenizer.from_pretrained(path)(" Hello world")["input_ids"]


def test_single_texts_match(pair):
    name, mine, ref = pair
    for text in TEXTS:
        assert as_lists(mine(text)) == as_lists(ref(text)), (name, text)
        assert mine.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False), text
        assert mine.tokenize(text) == ref.tokenize(text), (name, text)


def test_batch_matches(pair):
    name, mine, ref = pair
    assert as_lists(mine(TEXTS)) == as_lists(ref(TEXTS))
    assert as_lists(mine(TEXTS, add_special_tokens=False)) == as_lists(ref(TEXTS, add_special_tokens=False))


def test_pairs_match(pair):
    name, mine, ref = pair
    firsts, seconds = TEXTS[10:40], TEXTS[40:70]
    kwargs = dict(return_token_type_ids=True, return_special_tokens_mask=True, return_length=True)
    assert as_lists(mine(firsts, seconds, **kwargs)) == as_lists(ref(firsts, seconds, **kwargs))
    for a, b in zip(firsts, seconds):
        assert as_lists(mine(a, b, **kwargs)) == as_lists(ref(a, b, **kwargs)), (a, b)
        assert mine.encode(a, b) == ref.encode(a, b)


@pytest.mark.parametrize("name", ["llama2", "gpt2", "stories260K"])
def test_padding_matches(fresh_pair, name):
    mine, ref = fresh_pair(name)
    if ref.pad_token is None:
        mine.pad_token, ref.pad_token = mine.eos_token, ref.eos_token
    assert mine.padding_side == ref.padding_side
    cases = [
        dict(padding=True), dict(padding="longest", padding_side="left"), dict(padding=True, padding_side="right"),
        dict(padding=True, pad_to_multiple_of=8), dict(padding="max_length", max_length=40),
        dict(padding="max_length", max_length=16, truncation=True), dict(padding=True, return_tensors="pt"),
        dict(padding=True, return_tensors="np", pad_to_multiple_of=4),
    ]
    for kwargs in cases:
        a, b = mine(BATCH, **kwargs), ref(BATCH, **kwargs)
        assert as_lists(a) == as_lists(b), kwargs
        if kwargs.get("return_tensors") == "pt":
            for key in b:
                assert isinstance(a[key], torch.Tensor) and a[key].dtype == b[key].dtype
                assert torch.equal(a[key], b[key])
        if kwargs.get("return_tensors") == "np":
            assert all(isinstance(a[key], np.ndarray) for key in a)
    for side in ("left", "right"):
        mine.padding_side = ref.padding_side = side
        assert as_lists(mine(BATCH, padding=True)) == as_lists(ref(BATCH, padding=True))


def test_truncation_matches(pair):
    name, mine, ref = pair
    long_a, long_b = TEXTS[20] * 3, TEXTS[21] * 2
    cases = [
        dict(truncation=True, max_length=5), dict(max_length=7), dict(truncation="longest_first", max_length=12),
        dict(truncation="only_first", max_length=30), dict(truncation="only_second", max_length=30),
        dict(truncation=True, max_length=10, stride=2, return_overflowing_tokens=True),
    ]
    for kwargs in cases:
        same_outcome(lambda: mine(long_a, long_b, **kwargs), lambda: ref(long_a, long_b, **kwargs))
        same_outcome(lambda: mine([long_a, TEXTS[5]], **kwargs), lambda: ref([long_a, TEXTS[5]], **kwargs))
        same_outcome(lambda: mine([long_a], [TEXTS[7]], **kwargs), lambda: ref([long_a], [TEXTS[7]], **kwargs))


def test_truncation_side_left(fresh_pair):
    mine, ref = fresh_pair("llama2", truncation_side="left")
    assert mine.truncation_side == ref.truncation_side == "left"
    assert mine(TEXTS[20], truncation=True, max_length=6) == ref(TEXTS[20], truncation=True, max_length=6)


def test_tensors_single_text(pair):
    name, mine, ref = pair
    a, b = mine("Hello world", return_tensors="pt"), ref("Hello world", return_tensors="pt")
    assert set(a) == set(b)
    for key in b:
        assert a[key].shape == b[key].shape and torch.equal(a[key], b[key])
    assert mine.encode("Hello", return_tensors="pt").tolist() == ref.encode("Hello", return_tensors="pt").tolist()


def test_optional_outputs_match(pair):
    name, mine, ref = pair
    kwargs = dict(return_special_tokens_mask=True, return_offsets_mapping=True, return_length=True,
                  return_attention_mask=False, return_token_type_ids=True)
    assert as_lists(mine(TEXTS[:40], **kwargs)) == as_lists(ref(TEXTS[:40], **kwargs))
    enc_a, enc_b = mine(TEXTS[:5]), ref(TEXTS[:5])
    for i in range(5):
        assert enc_a.tokens(i) == enc_b.tokens(i)
        assert enc_a.word_ids(i) == enc_b.word_ids(i)
    assert enc_a.input_ids == enc_b.input_ids


def test_decode_matches(pair):
    name, mine, ref = pair
    for text in TEXTS:
        ids = ref(text)["input_ids"]
        for skip in (False, True):
            for clean in (None, False, True):
                got = mine.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
                assert got == ref.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=clean), text
    batch = ref(TEXTS[:30], padding=False)["input_ids"]
    assert mine.batch_decode(batch, skip_special_tokens=True) == ref.batch_decode(batch, skip_special_tokens=True)
    tensor = torch.tensor(ref.encode("Hello world"))
    assert mine.decode(tensor) == ref.decode(tensor)
    assert mine.decode(int(tensor[-1])) == ref.decode(int(tensor[-1]))


def test_vocab_and_special_tokens_match(pair):
    name, mine, ref = pair
    assert mine.vocab_size == ref.vocab_size and len(mine) == len(ref)
    assert mine.get_vocab() == ref.get_vocab()
    assert mine.special_tokens_map == ref.special_tokens_map
    assert mine.all_special_tokens == ref.all_special_tokens and mine.all_special_ids == ref.all_special_ids
    for attr in ("bos_token", "eos_token", "unk_token", "pad_token", "bos_token_id", "eos_token_id", "unk_token_id",
                 "pad_token_id", "model_max_length", "padding_side", "truncation_side", "model_input_names",
                 "clean_up_tokenization_spaces", "added_tokens_encoder"):
        assert getattr(mine, attr) == getattr(ref, attr), attr
    assert mine.added_tokens_decoder == ref.added_tokens_decoder
    tokens = ref.tokenize(TEXTS[25])
    assert mine.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
    ids = ref.convert_tokens_to_ids(tokens)
    assert mine.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
    assert mine.convert_tokens_to_string(tokens) == ref.convert_tokens_to_string(tokens)
    assert mine.convert_tokens_to_ids("never-a-token-xyz") == ref.convert_tokens_to_ids("never-a-token-xyz")
    assert mine.num_special_tokens_to_add() == ref.num_special_tokens_to_add()
    assert mine.num_special_tokens_to_add(pair=True) == ref.num_special_tokens_to_add(pair=True)


@pytest.mark.parametrize("name", ["llama2", "gpt2"])
def test_add_tokens_match(fresh_pair, name):
    mine, ref = fresh_pair(name)
    counts = [(tok.add_tokens(["<new_tok>", "hello_world_tok", "Hello"]),
               tok.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": ["<extra>"]}))
              for tok in (mine, ref)]
    assert counts[0] == counts[1] and counts[1][1] == 2
    assert len(mine) == len(ref) and mine.pad_token_id == ref.pad_token_id
    assert mine.additional_special_tokens == ref.additional_special_tokens
    assert mine.additional_special_tokens_ids == ref.additional_special_tokens_ids
    text = ["a<new_tok>b hello_world_tok <extra> <pad>", "Hello <new_tok>"]
    assert as_lists(mine(text, padding=True)) == as_lists(ref(text, padding=True))
    ids = ref(text[0])["input_ids"]
    assert mine.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)
    mine.pad_token, ref.pad_token = mine.eos_token, ref.eos_token
    assert mine.pad_token_id == ref.pad_token_id


def test_pad_already_encoded(fresh_pair):
    mine, ref = fresh_pair("gpt2")
    mine.pad_token, ref.pad_token = mine.eos_token, ref.eos_token
    features = [{"input_ids": ref.encode(t)} for t in BATCH]
    assert as_lists(mine.pad(features)) == as_lists(ref.pad(features))
    for kwargs in (dict(padding="max_length", max_length=20), dict(pad_to_multiple_of=8, padding_side="left"),
                   dict(return_tensors="pt"), dict(return_attention_mask=False)):
        assert as_lists(mine.pad(features, **kwargs)) == as_lists(ref.pad(features, **kwargs)), kwargs
    one = {"input_ids": ref.encode("Hello")}
    assert as_lists(mine.pad(one, padding="max_length", max_length=6)) == \
        as_lists(ref.pad(one, padding="max_length", max_length=6))


def test_llama_bos_eos_options(fresh_pair):
    mine, ref = fresh_pair("llama2", add_eos_token=True)
    assert as_lists(mine(BATCH)) == as_lists(ref(BATCH))
    assert mine("a", "b")["input_ids"] == ref("a", "b")["input_ids"]
    mine.add_bos_token = ref.add_bos_token = False
    assert as_lists(mine(BATCH)) == as_lists(ref(BATCH))
    assert mine.build_inputs_with_special_tokens([5, 6], [7]) == ref.build_inputs_with_special_tokens([5, 6], [7])


def test_generic_class_and_constructor():
    import transformers

    from formers import PreTrainedTokenizerFast

    path = shared_dir("llama2")
    mine, ref = PreTrainedTokenizerFast.from_pretrained(path), transformers.PreTrainedTokenizerFast.from_pretrained(path)
    assert as_lists(mine(BATCH)) == as_lists(ref(BATCH))  # generic class: token_type_ids included
    assert mine.model_input_names == ref.model_input_names and mine.padding_side == ref.padding_side
    kwargs = dict(tokenizer_file=str(path / "tokenizer.json"), bos_token="<s>", eos_token="</s>", pad_token="<unk>")
    mine, ref = PreTrainedTokenizerFast(**kwargs), transformers.PreTrainedTokenizerFast(**kwargs)
    assert as_lists(mine(BATCH, padding=True)) == as_lists(ref(BATCH, padding=True))
    mine = PreTrainedTokenizerFast(tokenizer_object=ref.backend_tokenizer, eos_token="</s>")
    assert mine(BATCH)["input_ids"] == ref(BATCH)["input_ids"] and mine.eos_token_id == 2


CLASS_CASES = [
    ("gpt2", "Qwen2Tokenizer"), ("gpt2", "GPTNeoXTokenizerFast"), ("gpt2", "BloomTokenizerFast"),
    ("gpt2", "CodeGenTokenizer"), ("gpt2", "CohereTokenizerFast"), ("gpt2", "PreTrainedTokenizerFast"),
    ("llama2", "GemmaTokenizer"), ("llama2", "CodeLlamaTokenizer"), ("llama2", "LlamaTokenizerFast"),
]


@pytest.mark.parametrize("source, tokenizer_class", CLASS_CASES)
def test_tokenizer_class_defaults_match(tmp_path, source, tokenizer_class):
    """A bare config naming only the class: the class's defaults (special tokens, BOS/EOS, inputs) must match."""
    import json
    import shutil

    shutil.copy(shared_dir(source) / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class}))
    from .conftest import load_both

    mine, ref = load_both(tmp_path)
    assert type(ref).__name__.removesuffix("Fast") == tokenizer_class.removesuffix("Fast")
    assert mine.special_tokens_map == ref.special_tokens_map and len(mine) == len(ref)
    assert mine.model_input_names == ref.model_input_names and mine.padding_side == ref.padding_side
    assert as_lists(mine(TEXTS)) == as_lists(ref(TEXTS))
    assert as_lists(mine(TEXTS[:20], TEXTS[20:40])) == as_lists(ref(TEXTS[:20], TEXTS[20:40]))


def test_pretokenized_input_matches(fresh_pair):
    words = [["Hello", "world", "!"], ["你好", " spaced", "🤗"]]
    for name, kwargs in (("llama2", {}), ("gpt2", {"add_prefix_space": True})):
        mine, ref = fresh_pair(name, **kwargs)
        assert as_lists(mine(words, is_split_into_words=True)) == as_lists(ref(words, is_split_into_words=True))
        assert as_lists(mine(words[0], is_split_into_words=True)) == \
            as_lists(ref(words[0], is_split_into_words=True))
