"""save_pretrained round trips (formers <-> transformers 4.45.2) and formers' errors for bad input."""
from __future__ import annotations

import json
import shutil

import pytest

from formers.errors import HubFileNotFoundError, TokenizerError, UnsafeCheckpointError
from formers.models.auto.tokenization_auto import AutoTokenizer

from .conftest import load_both, shared_dir
from .tok_corpus import sample_texts

TEXTS = sample_texts()[:120] + ["a<new_tok>b <extra> <pad>"]
CHAT = {"default": "{% for m in messages %}{{ m['content'] }}\n{% endfor %}", "tool_use": "{{ tools | tojson }}"}


def customize(tok):
    tok.add_tokens(["<new_tok>"])
    tok.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": ["<extra>"]})
    tok.chat_template = dict(CHAT)
    tok.model_max_length = 77


def check_same(a, b):
    assert a(TEXTS)["input_ids"] == b(TEXTS)["input_ids"]
    assert a(TEXTS[:8], padding=True) == b(TEXTS[:8], padding=True)
    for attr in ("special_tokens_map", "all_special_ids", "padding_side", "model_input_names", "model_max_length",
                 "chat_template", "clean_up_tokenization_spaces"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert len(a) == len(b)


@pytest.mark.parametrize("name", ["llama2", "gpt2", "stories260K"])
def test_formers_save_loads_in_transformers_and_back(tmp_path, name):
    import transformers

    mine, ref = load_both(shared_dir(name))
    customize(mine)
    customize(ref)
    files = mine.save_pretrained(tmp_path)
    assert {p.split("/")[-1] for p in files} >= {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == json.loads((shared_dir(name) / "tokenizer_config.json").read_text())[
        "tokenizer_class"].removesuffix("Fast")
    reloaded_ref = transformers.AutoTokenizer.from_pretrained(tmp_path)
    check_same(reloaded_ref, ref)
    check_same(AutoTokenizer.from_pretrained(tmp_path), ref)


@pytest.mark.parametrize("name", ["llama2", "gpt2"])
def test_transformers_save_loads_in_formers(tmp_path, name):
    import transformers

    ref = transformers.AutoTokenizer.from_pretrained(shared_dir(name))
    customize(ref)
    ref.save_pretrained(tmp_path)
    check_same(AutoTokenizer.from_pretrained(tmp_path), transformers.AutoTokenizer.from_pretrained(tmp_path))


def test_converted_tokenizer_saves_model_file(tmp_path):
    import transformers

    source = tmp_path / "src"
    source.mkdir()
    for filename in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(shared_dir("stories260K") / filename, source / filename)
    mine = AutoTokenizer.from_pretrained(source)
    mine.save_pretrained(tmp_path / "out")
    assert (tmp_path / "out" / "tokenizer.model").is_file()
    ref = transformers.AutoTokenizer.from_pretrained(source)
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "out")(TEXTS)["input_ids"] == ref(TEXTS)["input_ids"]


def test_trust_remote_code_refused():
    with pytest.raises(UnsafeCheckpointError, match="trust_remote_code"):
        AutoTokenizer.from_pretrained(shared_dir("gpt2"), trust_remote_code=True)


def test_folder_without_tokenizer_files(tmp_path):
    with pytest.raises(HubFileNotFoundError, match="tokenizer.json"):
        AutoTokenizer.from_pretrained(tmp_path)


def test_broken_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        AutoTokenizer.from_pretrained(tmp_path)


def test_bad_arguments_raise_formers_errors():
    tok = AutoTokenizer.from_pretrained(shared_dir("gpt2"))
    with pytest.raises(TokenizerError, match="pad_token"):
        tok(["a", "bb"], padding=True)
    tok.pad_token = tok.eos_token
    with pytest.raises(TokenizerError, match="padding='bogus'"):
        tok("a", padding="bogus")
    with pytest.raises(TokenizerError, match="truncation='sideways'"):
        tok("a", truncation="sideways")
    with pytest.raises(TokenizerError, match="return_tensors='tf'"):
        tok("a", return_tensors="tf")
    with pytest.raises(TokenizerError, match="text must be"):
        tok(123)
    with pytest.raises(TokenizerError, match="text_pair has 1"):
        tok(["a", "b"], ["c"])
    with pytest.raises(TokenizerError, match="batch_decode"):
        tok.decode([[1, 2], [3]])
    with pytest.raises(TokenizerError, match="different lengths"):
        tok(["a", "a b c"], return_tensors="pt")
    with pytest.raises(TokenizerError, match="padding_side"):
        tok(["a", "b c"], padding=True, padding_side="middle")
    with pytest.raises(TokenizerError, match="add_prefix_space"):
        tok(["a", "b"], is_split_into_words=True)
    with pytest.raises(TokenizerError, match="is a file"):
        tok.save_pretrained(shared_dir("gpt2") / "vocab.json")


def test_batch_encoding_helpers():
    import torch

    tok = AutoTokenizer.from_pretrained(shared_dir("llama2"), pad_token="<unk>")
    batch = tok(["Hello world", "a"], padding=True, return_tensors="pt").to("cpu")
    assert isinstance(batch, dict) and batch.input_ids is batch["input_ids"]
    assert isinstance(batch.attention_mask, torch.Tensor) and batch.input_ids.shape == (2, 3)
    assert batch.tokens(0)[0] == "<s>" and batch[0].ids == batch["input_ids"][0].tolist()
    with pytest.raises(AttributeError):
        batch.not_a_key
    assert batch[:1]["input_ids"].shape == (1, 3)


def test_gpt2_save_writes_slow_files(tmp_path):
    """vocab.json + merges.txt are written too, so transformers' slow GPT2Tokenizer can read the folder."""
    import transformers

    mine = AutoTokenizer.from_pretrained(shared_dir("gpt2"))
    names = {p.split("/")[-1] for p in mine.save_pretrained(tmp_path)}
    assert {"vocab.json", "merges.txt"} <= names
    slow = transformers.GPT2Tokenizer.from_pretrained(tmp_path)
    assert [slow.encode(t) for t in TEXTS[:60]] == [mine.encode(t) for t in TEXTS[:60]]
