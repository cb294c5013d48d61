"""text2text-generation, summarization and translation pipelines: the same records as 4.45.2's pipelines
on the same tiny checkpoints (BART and T5 with a byte-level BPE tokenizer built by 4.45.2's
BartTokenizerFast from tests/data/tokenizers/gpt2)."""
from __future__ import annotations

from pathlib import Path

import pytest

import formers
from tests.models.seq2seq_checks import build_seq2seq_checkpoint

GPT2 = Path(__file__).parents[1] / "data" / "tokenizers" / "gpt2"
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Hello world", "A longer input sentence, with commas."]


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory) -> Path:
    import transformers

    folder = tmp_path_factory.mktemp("bart_tok")
    transformers.BartTokenizerFast(vocab_file=str(GPT2 / "vocab.json"), merges_file=str(GPT2 / "merges.txt")
                                   ).save_pretrained(folder)
    return folder


def _checkpoint(tmp_path_factory, tokenizer_folder: Path, model_type: str, **fields) -> Path:
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(tokenizer_folder)
    folder = tmp_path_factory.mktemp(model_type)
    ids = {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id, "decoder_start_token_id": tok.bos_token_id}
    build_seq2seq_checkpoint(folder, model_type, vocab_size=50265, **ids, **fields)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bart_folder(tmp_path_factory, tokenizer_folder):
    return _checkpoint(tmp_path_factory, tokenizer_folder, "bart", bos_token_id=0, d_model=16, encoder_layers=1,
                       decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=24,
                       decoder_ffn_dim=24, max_position_embeddings=64, init_std=0.3, forced_eos_token_id=None)


@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory, tokenizer_folder):
    params = {"summarization": {"prefix": "summarize: ", "max_length": 9, "num_beams": 2},
              "translation_en_to_de": {"prefix": "translate English to German: ", "max_length": 11}}
    return _checkpoint(tmp_path_factory, tokenizer_folder, "t5", d_model=16, d_kv=4, d_ff=24, num_layers=1,
                       num_heads=2, relative_attention_num_buckets=8, task_specific_params=params,
                       initializer_factor=4.0)


def _both(task: str, folder: Path):
    import transformers

    return transformers.pipeline(task, model=str(folder)), formers.pipeline(task, model=str(folder))


@pytest.mark.parametrize("kwargs", [{}, {"num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 6},
                                    {"return_tensors": True, "max_new_tokens": 5}])
def test_text2text_equals_4_45(bart_folder, kwargs):
    theirs, ours = _both("text2text-generation", bart_folder)
    expected, got = theirs(TEXTS[0], **kwargs), ours(TEXTS[0], **kwargs)
    if kwargs.get("return_tensors"):
        assert [r["generated_token_ids"].tolist() for r in got] == [r["generated_token_ids"].tolist() for r in expected]
    else:
        assert got == expected
    assert ours(TEXTS, max_new_tokens=5) == theirs(TEXTS, max_new_tokens=5)  # a list: one record per text


def test_batched_inputs_equal_4_45(bart_folder):
    theirs, ours = _both("text2text-generation", bart_folder)
    assert ours(TEXTS, batch_size=3, max_new_tokens=6) == theirs(TEXTS, batch_size=3, max_new_tokens=6)


def test_summarization_uses_task_params_as_4_45(t5_folder):
    theirs, ours = _both("summarization", t5_folder)
    assert ours.prefix == "summarize: " and ours.generation_config.num_beams == 2
    assert ours(TEXTS) == theirs(TEXTS)


@pytest.mark.parametrize("task", ["translation_en_to_de", "translation"])
def test_translation_equals_4_45(t5_folder, task):
    import transformers

    theirs, ours = _both(task, t5_folder) if task != "translation" else (
        transformers.pipeline("translation", model=str(t5_folder)), formers.pipeline("translation", model=str(t5_folder)))
    assert ours.prefix == "translate English to German: "
    assert ours(TEXTS[1]) == theirs(TEXTS[1])
    assert ours(TEXTS[2], forced_bos_token_id=100, max_new_tokens=4) == theirs(TEXTS[2], forced_bos_token_id=100,
                                                                              max_new_tokens=4)


def test_causal_model_is_refused(bart_folder):
    from formers.errors import ConfigError

    model = formers.AutoModelForCausalLM.from_config(formers.LlamaConfig(vocab_size=64, hidden_size=16,
                                                                          intermediate_size=32, num_hidden_layers=1,
                                                                          num_attention_heads=2))
    with pytest.raises(ConfigError, match="encoder-decoder"):
        formers.pipeline("summarization", model=model, tokenizer=formers.AutoTokenizer.from_pretrained(bart_folder))


def test_outputs_are_not_trivial(bart_folder, t5_folder):
    """Guards the equality tests above: the tiny models do produce text."""
    for task, folder in (("text2text-generation", bart_folder), ("summarization", t5_folder)):
        (record,) = formers.pipeline(task, model=str(folder))(TEXTS[0])
        assert len(next(iter(record.values())).strip()) > 3
