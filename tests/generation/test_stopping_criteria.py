"""Stopping criteria against transformers 4.45.2."""
from __future__ import annotations

import time

import pytest
import torch
import transformers
import transformers.generation.stopping_criteria as hf

import formers.generation.stopping_criteria as fm
from formers.errors import GenerationError
from formers.generation import GenerationConfig


def _ids(length: int, last: list[int]):
    ids = torch.randint(10, 20, (len(last), length), generator=torch.Generator().manual_seed(0))
    ids[:, -1] = torch.tensor(last)
    return ids


@pytest.mark.parametrize("length", [4, 9, 10, 11])
def test_max_length(length):
    ids, scores = _ids(length, [1, 2, 3]), torch.zeros(3, 5)
    for mpe in (None, 8):
        ours = fm.MaxLengthCriteria(10, mpe)(ids, scores)
        theirs = hf.MaxLengthCriteria(10, mpe)(ids, scores)
        assert ours.dtype == torch.bool and ours.device == ids.device and torch.equal(ours, theirs)


def test_max_time():
    ids, scores = _ids(3, [1, 2]), torch.zeros(2, 5)
    now = time.time()
    for start, limit in ((now, 10.0), (now - 20, 10.0)):
        assert torch.equal(fm.MaxTimeCriteria(limit, start)(ids, scores), hf.MaxTimeCriteria(limit, start)(ids, scores))
    assert not fm.MaxTimeCriteria(5.0)(ids, scores).any()


@pytest.mark.parametrize("eos", [2, [2, 7], torch.tensor([7]), torch.tensor([2, 3])])
def test_eos(eos):
    ids, scores = _ids(5, [1, 2, 3, 7]), torch.zeros(4, 5)
    assert torch.equal(fm.EosTokenCriteria(eos)(ids, scores), hf.EosTokenCriteria(eos)(ids, scores))


def test_list_or_and_max_length():
    ids, scores = _ids(6, [1, 2, 3]), torch.zeros(3, 5)
    ours = fm.StoppingCriteriaList([fm.MaxLengthCriteria(10), fm.EosTokenCriteria([3])])
    theirs = hf.StoppingCriteriaList([hf.MaxLengthCriteria(10), hf.EosTokenCriteria([3])])
    assert torch.equal(ours(ids, scores), theirs(ids, scores))
    assert ours.max_length == theirs.max_length == 10
    assert fm.StoppingCriteriaList([fm.EosTokenCriteria(1)]).max_length is None
    assert torch.equal(fm.StoppingCriteriaList()(ids, scores), torch.zeros(3, dtype=torch.bool))


@pytest.fixture(scope="module")
def hf_model():
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=97)
    return transformers.LlamaForCausalLM(config)


@pytest.mark.parametrize("kwargs", [dict(), dict(max_time=3.0), dict(eos_token_id=[2, 3], max_length=7)])
def test_builder_order(hf_model, kwargs):
    theirs_config = transformers.GenerationConfig(**kwargs)
    eos = kwargs.get("eos_token_id")
    theirs_config._eos_token_tensor = torch.tensor(eos) if eos is not None else None
    theirs = hf_model._get_stopping_criteria(theirs_config, hf.StoppingCriteriaList())
    ours = fm.build_stopping_criteria(GenerationConfig(**kwargs), max_position_embeddings=2048)
    assert [type(c).__name__ for c in ours] == [type(c).__name__ for c in theirs]
    ids, scores = _ids(7, [2, 3, 4]), torch.zeros(3, 97)
    assert torch.equal(ours(ids, scores), theirs(ids, scores))


def test_builder_user_criteria_and_errors():
    config = GenerationConfig(eos_token_id=2)
    custom = fm.MaxTimeCriteria(1.0)
    built = fm.build_stopping_criteria(config, fm.StoppingCriteriaList([custom]), eos_token_id=torch.tensor([2]))
    assert built[-1] is custom and len(built) == 3
    with pytest.raises(GenerationError, match="MaxLengthCriteria"):
        fm.build_stopping_criteria(config, fm.StoppingCriteriaList([fm.MaxLengthCriteria(5)]))
    with pytest.raises(GenerationError, match="tokenizer"):
        fm.build_stopping_criteria(GenerationConfig(stop_strings=["x"]))
