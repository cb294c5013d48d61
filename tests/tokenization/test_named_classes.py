"""transformers' tokenizer class names in formers (LlamaTokenizer, GemmaTokenizerFast, GPT2Tokenizer, ...):
ids, tokens and decoded text equal transformers 4.45.2's class of the same name, loaded from the slow files
(tokenizer.model, or vocab.json + merges.txt), with `legacy` True and False where the class has it."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

import formers

from .conftest import shared_dir
from .tok_corpus import sample_texts
from .tok_spm_models import train_folder

TEXTS = sample_texts() + [
    "<s>Hello", "<s> Hello", "Hello<s>world", "</s>  two spaces", " <s> x", "▁Hello ▁world", "<bos>x<eos>",
    "<start_of_turn>user\nhi<end_of_turn>", "a  b", "x\n  y", "trailing  ",
]
_LOADED: dict[tuple, tuple] = {}


def _slow_files_only(tmp_path_factory, name: str) -> str:
    """A folder with the slow files (no tokenizer.json) of a real tokenizer, and its tokenizer_config.json."""
    source = shared_dir(name)
    folder = tmp_path_factory.mktemp(f"{name}-slow")
    for file in ("tokenizer.model", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / file).exists():
            shutil.copy(source / file, folder / file)
    return str(folder)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """name -> folder; the trained ones are made once per module, the real ones copied lazily."""
    made = {"gemma-trained": str(train_folder(tmp_path_factory.mktemp("gemma"), "gemma", "GemmaTokenizer")),
            "llama-trained": str(train_folder(tmp_path_factory.mktemp("llama"), "llama", "LlamaTokenizer"))}

    def get(name: str) -> str:
        if name not in made:
            made[name] = _slow_files_only(tmp_path_factory, name)
        return made[name]

    return get


def load_pair(folder: str, class_name: str, **kwargs):
    """(formers, transformers) instances of `class_name` from `folder`, cached per arguments."""
    import transformers

    key = (folder, class_name, tuple(sorted(kwargs.items())))
    if key not in _LOADED:
        _LOADED[key] = (getattr(formers, class_name).from_pretrained(folder, **kwargs),
                        getattr(transformers, class_name).from_pretrained(folder, **kwargs))
    return _LOADED[key]


CASES = [  # (folder name, class, extra from_pretrained arguments)
    *[(f, c, {"legacy": legacy}) for f in ("llama2", "stories260K", "llama-trained")
      for c in ("LlamaTokenizer", "LlamaTokenizerFast") for legacy in (True, False)],
    ("llama2", "LlamaTokenizer", {}), ("stories260K", "LlamaTokenizerFast", {"add_prefix_space": False}),
    ("llama2", "CodeLlamaTokenizer", {}), ("llama2", "CodeLlamaTokenizerFast", {}),
    ("llama-trained", "CodeLlamaTokenizer", {}), ("llama-trained", "CodeLlamaTokenizerFast", {}),
    ("gemma-trained", "GemmaTokenizer", {}), ("gemma-trained", "GemmaTokenizerFast", {}),
    ("gpt2", "GPT2Tokenizer", {}), ("gpt2", "GPT2TokenizerFast", {}),
    ("gpt2", "GPT2TokenizerFast", {"add_prefix_space": True}),
    ("gpt2", "Qwen2Tokenizer", {}), ("gpt2", "Qwen2TokenizerFast", {}),
]
IDS = [f"{f}-{c}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for f, c, kw in CASES]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def case(request, folders):
    folder, class_name, kwargs = request.param
    mine, ref = load_pair(folders(folder), class_name, **kwargs)
    assert type(mine).__name__ == type(ref).__name__ == class_name
    return mine, ref


def test_ids_and_tokens_match(case):
    mine, ref = case
    for text in TEXTS:
        assert mine(text)["input_ids"] == ref(text)["input_ids"], repr(text)
        assert mine.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False), repr(text)
        assert mine.tokenize(text) == ref.tokenize(text), repr(text)
    assert mine(TEXTS[:40], TEXTS[40:80])["input_ids"] == ref(TEXTS[:40], TEXTS[40:80])["input_ids"]


def test_padded_batch_matches(case):
    mine, ref = case
    if ref.pad_token is None:  # set on copies: the fixture's tokenizers are shared
        mine, ref = _with_pad(mine), _with_pad(ref)
    assert mine.padding_side == ref.padding_side
    batch = ["Hello world", " a", "", "你好 🤗", "x\ny <s> z"]
    for kwargs in (dict(padding=True), dict(padding=True, add_special_tokens=False),
                   dict(padding="max_length", max_length=12, truncation=True)):
        got, want = mine(batch, **kwargs), ref(batch, **kwargs)
        assert got["input_ids"] == want["input_ids"] and got["attention_mask"] == want["attention_mask"], kwargs


def _with_pad(tok):
    import copy

    tok = copy.deepcopy(tok)
    tok.pad_token = tok.eos_token
    return tok


def test_decode_matches(case):
    mine, ref = case
    rng = random.Random(0)
    sequences = [ref(text)["input_ids"] for text in TEXTS]
    sequences += [[rng.randrange(ref.vocab_size) for _ in range(rng.randrange(1, 16))] for _ in range(300)]
    for ids in sequences:
        assert mine.decode(ids) == ref.decode(ids), ids
        assert mine.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True), ids
    assert mine.batch_decode(sequences[:20]) == ref.batch_decode(sequences[:20])


def test_special_tokens_and_flags_match(case):
    mine, ref = case
    assert mine.special_tokens_map == ref.special_tokens_map
    assert mine.all_special_ids == ref.all_special_ids
    assert (mine.bos_token_id, mine.eos_token_id, mine.pad_token_id) == (ref.bos_token_id, ref.eos_token_id,
                                                                        ref.pad_token_id)
    assert mine.is_fast == ref.is_fast and mine.vocab_size == ref.vocab_size
    if hasattr(ref, "add_bos_token") and hasattr(ref, "add_eos_token"):
        assert (mine.add_bos_token, mine.add_eos_token) == (ref.add_bos_token, ref.add_eos_token)


def test_legacy_flag_changes_llama_ids(folders):
    """Legacy and non-legacy differ on text right after a special token; each flag matches the oracle's class
    of the same name (the parity cases above), and here the two really differ."""
    for class_name in ("LlamaTokenizer", "LlamaTokenizerFast"):
        legacy, _ = load_pair(folders("llama-trained"), class_name, legacy=True)
        modern, _ = load_pair(folders("llama-trained"), class_name, legacy=False)
        assert legacy.encode("Hello<s>world") != modern.encode("Hello<s>world")


def test_fast_class_rebuilds_from_slow_on_request():
    """A folder with tokenizer.json and tokenizer.model: from_slow=True rebuilds from the model, as 4.45.2."""
    path = str(shared_dir("stories260K"))
    mine, ref = load_pair(path, "LlamaTokenizerFast", from_slow=True, legacy=True)
    for text in TEXTS:
        assert mine.encode(text) == ref.encode(text), repr(text)


AUTO_CASES = ["LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "GemmaTokenizer", "GemmaTokenizerFast",
              "PreTrainedTokenizerFast"]


@pytest.mark.parametrize("use_fast", [True, False])
@pytest.mark.parametrize("class_name", AUTO_CASES)
def test_auto_tokenizer_picks_the_named_class(folders, tmp_path, use_fast, class_name):
    """tokenizer_config.json's class decides (its Fast twin unless use_fast=False), over the same files."""
    import transformers

    if class_name.startswith("Gemma"):  # a Gemma class needs a Gemma-style model (no dummy prefix)
        shutil.copy(Path(folders("gemma-trained")) / "tokenizer.model", tmp_path / "tokenizer.model")
    else:
        for file in ("tokenizer.model", "tokenizer.json"):
            shutil.copy(shared_dir("stories260K") / file, tmp_path / file)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": class_name}))
    mine = formers.AutoTokenizer.from_pretrained(tmp_path, use_fast=use_fast)
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path, use_fast=use_fast)
    assert type(mine).__name__ == type(ref).__name__
    assert mine.encode(" Hello <s> world") == ref.encode(" Hello <s> world")


@pytest.mark.parametrize("use_fast", [True, False])
@pytest.mark.parametrize("class_name", ["GPT2Tokenizer", "GPT2TokenizerFast", "Qwen2Tokenizer"])
def test_auto_tokenizer_picks_bpe_classes(folders, use_fast, class_name, tmp_path):
    import transformers

    source = shared_dir("gpt2")
    for file in ("vocab.json", "merges.txt"):
        shutil.copy(source / file, tmp_path / file)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": class_name}))
    mine = formers.AutoTokenizer.from_pretrained(tmp_path, use_fast=use_fast)
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path, use_fast=use_fast)
    assert type(mine).__name__ == type(ref).__name__
    assert mine.encode("Hello  world\n<|endoftext|>") == ref.encode("Hello  world\n<|endoftext|>")


def test_named_classes_are_top_level_exports():
    from formers.tokenization import GemmaTokenizerFast, LlamaTokenizer

    assert formers.LlamaTokenizer is LlamaTokenizer and formers.GemmaTokenizerFast is GemmaTokenizerFast
    assert issubclass(formers.GPT2Tokenizer, formers.PreTrainedTokenizerFast)


INFILL_CALLS = [
    ("def f(x):\n    <FILL_ME>\n    return y", {}), ("def f(x):", {"suffix": "    return x\n"}),
    ("def f(x):", {"suffix": "  return", "suffix_first": True}), ("a <FILL_ME> b", {"add_special_tokens": False}),
    ("plain text  here", {}),
]


@pytest.mark.parametrize("folder", ["llama2", "llama-trained"])
@pytest.mark.parametrize("config", [{}, {"add_eos_token": True}], ids=["default", "eos"])
def test_code_llama_infilling_matches(folders, folder, config):
    """<FILL_ME> / suffix= infilling layouts of CodeLlamaTokenizerFast, and plain encoding after them."""
    import transformers

    path = folders(folder)
    mine = formers.CodeLlamaTokenizerFast.from_pretrained(path, **config)
    ref = transformers.CodeLlamaTokenizerFast.from_pretrained(path, **config)
    assert (mine.prefix_id, mine.middle_id, mine.suffix_id, mine.eot_id) == (ref.prefix_id, ref.middle_id,
                                                                             ref.suffix_id, ref.eot_id)
    for text, kwargs in INFILL_CALLS:
        got, want = mine(text, **kwargs)["input_ids"], ref(text, **kwargs)["input_ids"]
        assert got == want, (text, kwargs)
        assert mine.decode(got) == ref.decode(want)
        for plain in TEXTS[:60]:  # 4.45.2 leaves the legacy normalizer in place after infilling; so does formers
            assert mine.encode(plain) == ref.encode(plain), repr(plain)


DIRECT_TEXT = [" Hello <s> world\n  x", "Hello", "  two", "<s>x", "é 🤗 done"]


@pytest.mark.parametrize("class_name", ["LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer",
                                        "CodeLlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast"])
@pytest.mark.parametrize("config", [{}, {"legacy": True}, {"legacy": False}], ids=["default", "legacy", "modern"])
def test_direct_construction_from_tokenizer_model(folders, class_name, config):
    """`LlamaTokenizer("tokenizer.model")`: the first positional argument is the file, as in transformers."""
    import transformers

    folder = folders("gemma-trained" if class_name.startswith("Gemma") else "llama-trained")
    model = str(Path(folder) / "tokenizer.model")
    mine, ref = getattr(formers, class_name)(model, **config), getattr(transformers, class_name)(model, **config)
    for text in DIRECT_TEXT + TEXTS[:50]:
        assert mine.encode(text) == ref.encode(text), repr(text)
        assert mine.decode(ref.encode(text)) == ref.decode(ref.encode(text)), repr(text)


@pytest.mark.parametrize("class_name", ["GPT2Tokenizer", "GPT2TokenizerFast", "Qwen2Tokenizer", "Qwen2TokenizerFast"])
def test_direct_construction_from_vocab_and_merges(class_name):
    import transformers

    folder = shared_dir("gpt2")
    files = (str(folder / "vocab.json"), str(folder / "merges.txt"))
    mine, ref = getattr(formers, class_name)(*files), getattr(transformers, class_name)(*files)
    for text in DIRECT_TEXT + TEXTS[:50]:
        assert mine.encode(text) == ref.encode(text), repr(text)
        assert mine.decode(ref.encode(text)) == ref.decode(ref.encode(text)), repr(text)


@pytest.mark.parametrize("folder, class_name", [("llama-trained", "LlamaTokenizer"), ("gemma-trained", "GemmaTokenizer"),
                                                ("gemma-trained", "GemmaTokenizerFast"), ("gpt2", "GPT2Tokenizer"),
                                                ("llama-trained", "CodeLlamaTokenizerFast")])
def test_saved_folder_loads_in_transformers(folders, tmp_path, folder, class_name):
    """save_pretrained of a named class: 4.45.2's AutoTokenizer picks the same family and gives the same ids."""
    import transformers

    mine = getattr(formers, class_name).from_pretrained(folders(folder))
    mine.save_pretrained(tmp_path)
    use_fast = class_name.endswith("Fast")
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path, use_fast=use_fast)
    again = formers.AutoTokenizer.from_pretrained(tmp_path, use_fast=use_fast)
    assert type(ref).__name__ == type(again).__name__ == class_name
    for text in TEXTS[:80]:
        assert mine.encode(text) == ref.encode(text) == again.encode(text), repr(text)
